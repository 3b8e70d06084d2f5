namespace AgentPg.AspNetCore.Admin;

/// <summary>The stylesheet and script embedded in the assembly (no CDN, no build step).</summary>
internal static class Assets
{
    private static readonly Dictionary<string, (byte[] Content, string ContentType)> s_assets = Load();

    public static IResult Serve(string name)
        => s_assets.TryGetValue(name, out var asset) ? Results.Bytes(asset.Content, asset.ContentType) : Results.NotFound();

    private static Dictionary<string, (byte[], string)> Load()
    {
        var assembly = typeof(Assets).Assembly;
        var assets = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var (name, type) in new[] { ("admin.css", "text/css; charset=utf-8"), ("admin.js", "text/javascript; charset=utf-8"), ("favicon.svg", "image/svg+xml") })
        {
            using var stream = assembly.GetManifestResourceStream("AgentPg.AspNetCore.Assets." + name)
                ?? throw new InvalidOperationException($"The embedded asset {name} is missing from {assembly.GetName().Name}.");
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            assets[name] = (copy.ToArray(), type);
        }

        return assets;
    }
}
