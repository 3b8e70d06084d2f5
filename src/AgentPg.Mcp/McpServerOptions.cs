using System.Text.RegularExpressions;

namespace AgentPg.Mcp;

/// <summary>How to reach one MCP server whose tools become AgentPg tools (see
/// <see cref="AgentPgMcpExtensions.AddMcpServerAsync"/>).</summary>
/// <remarks>Exactly one transport: <see cref="Command"/> (stdio: AgentPg starts the server as a child process) or
/// <see cref="Endpoint"/> (Streamable HTTP). The options are validated once, when the server is added; the source works on
/// its own copy.</remarks>
public sealed partial class McpServerOptions
{
    /// <summary>The longest <see cref="Name"/>: it prefixes tool names (<c>{Name}__{tool}</c>), which Claude limits to 64 characters.</summary>
    public const int MaxNameLength = 40;

    /// <summary>Gets or sets the server's name: it prefixes its tools' names (<c>{Name}__{tool}</c>) and appears in logs and errors.</summary>
    /// <value>Required: 1 to 40 letters, digits, <c>_</c> or <c>-</c>.</value>
    public string Name { get; set; } = "";

    /// <summary>Gets or sets the command that starts the server over stdio (for example <c>npx</c>, <c>node</c>, <c>uvx</c> or a path).</summary>
    /// <value>The default value is <see langword="null"/>. Set it or <see cref="Endpoint"/>, not both.</value>
    public string? Command { get; set; }

    /// <summary>Gets or sets the command's arguments (stdio only).</summary>
    /// <value>The default value is empty.</value>
    public IReadOnlyList<string> Arguments { get; set; } = [];

    /// <summary>Gets or sets environment variables for the server process (stdio only), added to the ones it inherits;
    /// a <see langword="null"/> value removes an inherited variable.</summary>
    /// <value>The default value is empty.</value>
    public IReadOnlyDictionary<string, string?> Environment { get; set; } = new Dictionary<string, string?>();

    /// <summary>Gets or sets the server process's working directory (stdio only).</summary>
    /// <value>The default value is <see langword="null"/>: the current directory.</value>
    public string? WorkingDirectory { get; set; }

    /// <summary>Gets or sets the server's Streamable HTTP endpoint (an absolute <c>http</c> or <c>https</c> URI).</summary>
    /// <value>The default value is <see langword="null"/>. Set it or <see cref="Command"/>, not both.</value>
    public Uri? Endpoint { get; set; }

    /// <summary>Gets or sets headers sent with every HTTP request (Streamable HTTP only), for example a static API key.</summary>
    /// <value>The default value is empty.</value>
    public IReadOnlyDictionary<string, string> Headers { get; set; } = new Dictionary<string, string>();

    /// <summary>Gets or sets a callback that returns headers for each HTTP request (Streamable HTTP only), for example a
    /// bearer token that expires; its headers replace <see cref="Headers"/> of the same name.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    /// <remarks>Called for every request, concurrently: cache tokens in the callback. An exception fails the request
    /// (a tool call then retries per <see cref="AgentPgOptions.ToolRetry"/>).</remarks>
    public Func<CancellationToken, ValueTask<IReadOnlyDictionary<string, string>>>? HeaderProvider { get; set; }

    /// <summary>Gets or sets which of the server's tools to register, by their name on the server; the others are ignored.</summary>
    /// <value>The default value is <see langword="null"/>: every tool.</value>
    public Func<string, bool>? ToolFilter { get; set; }

    /// <summary>Gets or sets whether tools keep their name on the server instead of <c>{Name}__{tool}</c>.</summary>
    /// <value>The default value is <see langword="false"/>.</value>
    /// <remarks>Without the prefix, a tool with the name of an application's registered tool replaces it; one with the name
    /// of another MCP source's tool is refused (see <see cref="AgentPgMcpExtensions.AddMcpServerAsync"/>).</remarks>
    public bool DisableToolPrefix { get; set; }

    /// <summary>Gets or sets the longest wait between two reconnection attempts after the connection is lost (the wait
    /// starts at 1 second and doubles).</summary>
    /// <value>The default value is 30 seconds.</value>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long the first connection (and each reconnection) may take, including the MCP handshake
    /// and the tool discovery.</summary>
    /// <value>The default value is 60 seconds (an <c>npx</c> server may be downloaded first).</value>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Gets or sets how long tool calls wait for the server while it cannot be reached: a call made while the
    /// server is unreachable is snoozed (no attempt used) until it reconnects, but once it has been unreachable for this
    /// long, calls fail at once (Claude gets an error tool result saying so) until it is reachable again.</summary>
    /// <value>The default value is 5 minutes. <see cref="Timeout.InfiniteTimeSpan"/> snoozes calls for as long as the
    /// outage lasts (the runs wait in <c>pending_tools</c>).</value>
    /// <remarks>The time counts from when this instance lost the connection (or was started again after
    /// <see cref="AgentPgClient.StopAsync"/>), measured with <see cref="AgentPgOptions.TimeProvider"/>.</remarks>
    public TimeSpan UnavailableTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The longest tool name Claude accepts.</summary>
    private const int MaxToolNameLength = 64;

    /// <summary>Returns the name Claude sees for a tool called <paramref name="toolName"/> on this server.</summary>
    /// <param name="toolName">The tool's name on the server.</param>
    /// <returns><c>{Name}__{toolName}</c>, or <paramref name="toolName"/> when <see cref="DisableToolPrefix"/> is set, when that
    /// satisfies Claude's rule (<c>^[a-zA-Z0-9_-]{1,64}$</c>). Otherwise the same with every other character (<c>.</c>,
    /// <c>/</c>, a space …) replaced by <c>_</c>; and when that is still longer than 64 characters (or empty), cut to fit
    /// <c>_</c> and the first 8 hexadecimal digits of the SHA-256 of the tool's name on the server (UTF-8) at the end. The
    /// mapping depends on the name alone, so a tool keeps its name across reconnections; calls reach the server under its
    /// own name. When another of the server's tools maps to the same name, a tool whose name needed mapping is registered
    /// with <c>_</c> and those 8 hexadecimal digits at the end instead (the one that needed none keeps it).</returns>
    public string ToolNameFor(string toolName)
    {
        ArgumentNullException.ThrowIfNull(toolName);
        var prefix = DisableToolPrefix ? "" : $"{Name}__";
        var name = prefix + toolName;
        if (Internal.ToolNames.IsValid(name))
        {
            return name;
        }

        var mapped = Mapped(toolName);
        if (mapped.Length > 0 && prefix.Length + mapped.Length <= MaxToolNameLength)
        {
            return prefix + mapped;
        }

        return Hashed(prefix, mapped, toolName);
    }

    /// <summary>The name of a tool whose <see cref="ToolNameFor"/> another tool of the same server maps to as well: the
    /// mapped name cut so that <c>_</c> and the first 8 hexadecimal digits of the SHA-256 of the tool's name fit at the end
    /// (<c>files.read</c> next to <c>files_read</c> → <c>{Name}__files_read_{hash}</c>).</summary>
    internal string DisambiguatedToolNameFor(string toolName)
    {
        var prefix = DisableToolPrefix ? "" : $"{Name}__";
        return Hashed(prefix, Mapped(toolName), toolName);
    }

    private static string Mapped(string toolName) => string.Create(toolName.Length, toolName, static (span, source) =>
    {
        for (var i = 0; i < source.Length; i++)
        {
            var c = source[i];
            span[i] = char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_';
        }
    });

    private static string Hashed(string prefix, string mapped, string toolName)
    {
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(toolName)))[..8];
        var keep = MaxToolNameLength - prefix.Length - 1 - hash.Length;
        return $"{prefix}{mapped[..Math.Min(keep, mapped.Length)]}_{hash}";
    }

    /// <summary>Checks the options.</summary>
    /// <returns>One message per problem, each naming the option and how to fix it; empty when the options are valid.</returns>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        var label = string.IsNullOrEmpty(Name) ? "MCP server" : $"MCP server '{Name}'";
        if (string.IsNullOrEmpty(Name))
        {
            errors.Add("Name is required: it prefixes the server's tool names ({Name}__{tool}).");
        }
        else if (Name.Length > MaxNameLength || !ValidName().IsMatch(Name))
        {
            errors.Add($"Name '{Name}' is invalid: use 1 to {MaxNameLength} letters, digits, '_' or '-' (it prefixes tool names, which Claude requires to match ^[a-zA-Z0-9_-]{{1,64}}$).");
        }

        var hasCommand = !string.IsNullOrWhiteSpace(Command);
        if (hasCommand == Endpoint is not null)
        {
            errors.Add(hasCommand
                ? $"{label}: set Command (stdio) or Endpoint (Streamable HTTP), not both."
                : $"{label}: set Command (stdio, for example \"npx\") or Endpoint (Streamable HTTP, for example https://host/mcp); neither is set.");
        }

        if (Endpoint is { } endpoint && (!endpoint.IsAbsoluteUri || (endpoint.Scheme != Uri.UriSchemeHttp && endpoint.Scheme != Uri.UriSchemeHttps)))
        {
            errors.Add($"{label}: Endpoint '{endpoint}' must be an absolute http or https URI.");
        }

        if (Endpoint is null && (Headers.Count > 0 || HeaderProvider is not null))
        {
            errors.Add($"{label}: Headers and HeaderProvider apply to Endpoint (Streamable HTTP) only.");
        }

        if (!hasCommand && (Arguments.Count > 0 || Environment.Count > 0 || WorkingDirectory is not null))
        {
            errors.Add($"{label}: Arguments, Environment and WorkingDirectory apply to Command (stdio) only.");
        }

        if (Arguments.Any(a => a is null))
        {
            errors.Add($"{label}: Arguments must not contain null.");
        }

        if (WorkingDirectory is not null && !Directory.Exists(WorkingDirectory))
        {
            errors.Add($"{label}: WorkingDirectory '{WorkingDirectory}' does not exist.");
        }

        if (MaxReconnectDelay < TimeSpan.FromSeconds(1))
        {
            errors.Add($"{label}: MaxReconnectDelay must be at least 1 second (got {MaxReconnectDelay}).");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{label}: ConnectTimeout must be positive (got {ConnectTimeout}).");
        }

        if (UnavailableTimeout <= TimeSpan.Zero && UnavailableTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{label}: UnavailableTimeout must be positive or Timeout.InfiniteTimeSpan (got {UnavailableTimeout}).");
        }

        return errors;
    }

    /// <summary>The copy a source works on, after <see cref="Validate"/> found nothing wrong.</summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names each problem.</exception>
    internal McpServerOptions ValidatedCopy(string paramName)
    {
        Internal.OptionErrors.ThrowIfAny(Validate(), nameof(McpServerOptions), paramName);
        return Clone();
    }

    internal McpServerOptions Clone()
    {
        // Every option copied (a new one needs no line here); the collections copied too, so the caller's later changes to
        // them do not reach the source.
        var copy = (McpServerOptions)MemberwiseClone();
        copy.Arguments = [.. Arguments];
        copy.Environment = new Dictionary<string, string?>(Environment, StringComparer.Ordinal);
        copy.Headers = new Dictionary<string, string>(Headers, StringComparer.OrdinalIgnoreCase);
        return copy;
    }

    [GeneratedRegex("^[a-zA-Z0-9_-]+$", RegexOptions.CultureInvariant)]
    private static partial Regex ValidName();
}
