using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using AgentPg.Internal;

namespace AgentPg.AspNetCore.Admin;

/// <summary>The page shell and the small renderers every page shares.</summary>
internal static class AdminPages
{
    // JSON for people: "São Paulo", + and < as they are, not \u00E3 (the default encoder escapes for HTML and ASCII). Safe
    // because every page encodes it again as HTML text.
    private static readonly JsonSerializerOptions s_indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions s_compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly (string Path, string Label)[] s_navigation =
    [
        ("/dashboard", "Dashboard"), ("/usage", "Usage"), ("/runs", "Runs"), ("/sessions", "Sessions"), ("/tool-executions", "Tool executions"),
        ("/agents", "Agents"), ("/instances", "Instances"), ("/compaction", "Compaction"), ("/approvals", "Approvals"), ("/chat", "Chat"),
    ];

    /// <summary>A whole page. With the <c>X-AgentPg-Fragment</c> header (the live refresh of admin.js) only the main content.</summary>
    public static IResult Page(AdminRequest r, string title, Html content, int statusCode = StatusCodes.Status200OK)
    {
        if (r.Http.Request.Headers.ContainsKey("X-AgentPg-Fragment"))
        {
            return new HtmlResult(content.Value, statusCode);
        }

        var path = r.Http.Request.Path.Value ?? "";
        var nav = s_navigation.Select(n => Html.Of(
            $"""<a href="{r.Url(n.Path)}"{(path.StartsWith(r.Base + n.Path, StringComparison.Ordinal) || path.EndsWith(n.Path, StringComparison.Ordinal) ? Html.Trusted(" class=\"active\"") : Html.Empty)}>{n.Label}</a>"""));
        var html = Html.Of($"""
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{title} · AgentPg</title>
            <link rel="icon" href="{r.Url("/assets/favicon.svg")}">
            <link rel="stylesheet" href="{r.Url("/assets/admin.css")}">
            <script src="{r.Url("/assets/admin.js")}" defer></script>
            </head>
            <body>
            <header><a class="brand" href="{r.Url("/dashboard")}">AgentPg</a><nav>{nav}</nav>{Html.When(r.Options.ReadOnly, Html.Trusted("<span class=\"readonly\">read-only</span>"))}</header>
            <main id="main">
            <h1>{title}</h1>
            {content}
            </main>
            </body>
            </html>
            """);
        return new HtmlResult(html.Value, statusCode);
    }

    /// <summary>A status page (403, 400, 404) that needs no client or tenant.</summary>
    public static IResult Status(int statusCode, string title, Html message)
        => new HtmlResult(Html.Of($"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>{title} · AgentPg</title></head>
            <body><main><h1>{title}</h1>{message}</main></body></html>
            """).Value, statusCode);

    public static Html StateBadge(RunState state) => Html.Of($"""<span class="badge state-{Name(state)}">{Name(state)}</span>""");

    public static Html StateBadge(ToolExecutionState state) => Html.Of($"""<span class="badge tool-{Name(state)}">{Name(state)}</span>""");

    /// <summary>The state's database name (the page filters and the badges' CSS classes use it).</summary>
    public static string Name(RunState state) => state.ToDb();

    /// <summary>The state's database name.</summary>
    public static string Name(ToolExecutionState state) => state.ToDb();

    public static bool IsTerminal(RunState state) => state.IsTerminal();

    public static Html Time(DateTimeOffset? time)
        => time is { } t
            ? Html.Of($"""<time datetime="{t.UtcDateTime.ToString("O", CultureInfo.InvariantCulture)}">{t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}</time>""")
            : Html.Trusted("<span class=\"muted\">—</span>");

    public static string Duration(TimeSpan? duration) => duration switch
    {
        null => "—",
        { TotalMilliseconds: < 1000 } d => $"{d.TotalMilliseconds:0} ms",
        { TotalSeconds: < 120 } d => $"{d.TotalSeconds:0.0} s",
        { TotalMinutes: < 120 } d => $"{d.TotalMinutes:0.0} min",
        var d => $"{d.Value.TotalHours:0.0} h",
    };

    public static string Tokens(long count) => count.ToString("#,0", CultureInfo.InvariantCulture);

    public static string Short(Guid id) => id.ToString("N")[..8];

    public static Html RunLink(AdminRequest r, Guid id) => Html.Of($"""<a class="id" href="{r.Url($"/runs/{id}")}">{Short(id)}</a>""");

    public static Html SessionLink(AdminRequest r, Guid id) => Html.Of($"""<a class="id" href="{r.Url($"/sessions/{id}")}">{Short(id)}</a>""");

    public static Html ToolExecutionLink(AdminRequest r, Guid id) => Html.Of($"""<a class="id" href="{r.Url($"/tool-executions/{id}")}">{Short(id)}</a>""");

    public static string Json(JsonElement? element)
        => element is { ValueKind: not JsonValueKind.Undefined } e ? EscapeBidiControls(JsonSerializer.Serialize(e, s_indented)) : "";

    public static string Json(IReadOnlyDictionary<string, object?> values)
        => values.Count == 0 ? "{}" : EscapeBidiControls(JsonSerializer.Serialize(values, s_indented));

    /// <summary>Metadata on one line, as the lists and facts show it.</summary>
    public static string CompactJson(IReadOnlyDictionary<string, object?> values)
        => values.Count == 0 ? "{}" : EscapeBidiControls(JsonSerializer.Serialize(values, s_compact));

    // JSON shows a bidirectional control (which would reorder what follows it on the page, see Html) as its escape, \u202E: the
    // same value, so an input approved unchanged from the form is still Claude's. Outside strings JSON holds none.
    private static string EscapeBidiControls(string json) => Html.ShowBidiControls(json, asJsonEscape: true);

    /// <summary>The "next page" link of a keyset list, keeping the current filters.</summary>
    public static Html NextPage(AdminRequest r, string? cursor)
    {
        if (cursor is null)
        {
            return Html.Empty;
        }

        var query = r.Http.Request.Query.Where(q => q.Key != "cursor")
            .Select(q => $"{Uri.EscapeDataString(q.Key)}={Uri.EscapeDataString(q.Value.ToString())}")
            .Append($"cursor={Uri.EscapeDataString(cursor)}");
        return Html.Of($"""<p class="pager"><a rel="next" href="{r.Http.Request.PathBase}{r.Http.Request.Path}?{string.Join("&", query)}">Next page →</a></p>""");
    }

    public static Html Option(string value, string label, string? selected)
        => Html.Of($"""<option value="{value}"{Html.When(value == selected, Html.Trusted(" selected"))}>{label}</option>""");

    /// <summary>A POST button with the antiforgery token; absent in read-only mode.</summary>
    public static Html ActionButton(AdminRequest r, string path, string label, string cssClass = "", bool returnToChat = false)
        => r.CanAct
            ? Html.Of($"""<form method="post" action="{r.Url(path)}" class="inline">{r.AntiforgeryField()}{Html.When(returnToChat, Html.Trusted("<input type=\"hidden\" name=\"return\" value=\"chat\">"))}<button type="submit" class="{cssClass}">{label}</button></form>""")
            : Html.Empty;

    /// <summary>The live event stream of a run in progress (server-sent events fed by WatchRunAsync). When it cannot be
    /// opened the script falls back to refreshing the page fragment until the run ends.</summary>
    public static string EventsUrl(AdminRequest r, Guid runId) => r.Url($"/runs/{runId}/events");

    /// <summary>Writes a page with its content type; the security headers were set by <see cref="AdminGate"/>.</summary>
    private sealed class HtmlResult(string html, int statusCode) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = statusCode;
            httpContext.Response.ContentType = "text/html; charset=utf-8";
            return httpContext.Response.WriteAsync(html, httpContext.RequestAborted);
        }
    }
}
