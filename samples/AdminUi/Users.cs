using System.Net;

/// <summary>The sample's two users, each in a tenant. A real application signs users in its own way; what the admin UI needs
/// is an authenticated user and, for multi-tenant data, a claim to filter by.</summary>
internal static class Users
{
    private static readonly Dictionary<string, string> s_tenants = new(StringComparer.Ordinal) { ["ann"] = "acme", ["bob"] = "globex" };

    public static bool TryGetTenant(string user, string password, out string tenant)
    {
        tenant = "";
        return password == "demo" && s_tenants.TryGetValue(user, out tenant!);
    }

    public static IEnumerable<string> Tenants => s_tenants.Values;

    public static string LoginPage(string? returnUrl, bool failed = false) => $"""
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
        <body><h1>Sign in</h1>{(failed ? "<p>Unknown user or wrong password.</p>" : "")}
        <form method="post" action="/login"><input type="hidden" name="returnUrl" value="{WebUtility.HtmlEncode(returnUrl ?? "/agentpg/")}">
        <label>User <input name="user" value="ann"></label> <label>Password <input name="password" type="password" value="demo"></label>
        <button type="submit">Sign in</button></form><p>ann sees tenant acme, bob sees tenant globex.</p></body></html>
        """;
}
