using System.Globalization;
using Microsoft.AspNetCore.Antiforgery;

namespace AgentPg.AspNetCore.Admin;

/// <summary>What a page needs to know about the request it renders: the client, the options, the tenant, where the UI
/// lives, and the antiforgery token of its forms.</summary>
internal sealed class AdminRequest
{
    private AntiforgeryTokenSet? _tokens;
    private List<AgentDefinition>? _agents;

    public AdminRequest(HttpContext http, AgentPgAdminOptions options, string prefix)
    {
        Http = http;
        Options = options;
        Client = http.RequestServices.GetRequiredService<AgentPgClient>();
        Tenant = options.TenantFilter?.Invoke(http);
        Base = http.Request.PathBase.Add(prefix).Value ?? prefix;
    }

    public HttpContext Http { get; }

    public AgentPgAdminOptions Options { get; }

    public AgentPgClient Client { get; }

    /// <summary>The request's tenant filter, or <see langword="null"/> when it sees everything.</summary>
    public IReadOnlyDictionary<string, object?>? Tenant { get; }

    /// <summary>The agents the request may see and chat with (<see cref="AgentPgAdminOptions.AgentFilter"/>), ordered by name.</summary>
    public async Task<IReadOnlyList<AgentDefinition>> AgentsAsync()
    {
        var agents = await AllAgentsAsync().ConfigureAwait(false);
        return Options.AgentFilter is { } filter ? agents.Where(a => filter(Http, a)).ToList() : agents;
    }

    /// <summary>Every agent, ordered by name, read once per request: the checks of <see cref="AgentPgAdminOptions.AgentFilter"/>
    /// (deleting a session, restoring a compaction, starting a chat) need all of them, not a first page. An agent created while
    /// the pages are read may be missed and one deleted may shift the next page; either only makes a check refuse.</summary>
    public async Task<IReadOnlyList<AgentDefinition>> AllAgentsAsync()
    {
        if (_agents is not null)
        {
            return _agents;
        }

        var agents = new List<AgentDefinition>();
        AgentList page;
        do
        {
            page = await Client.ListAgentsAsync(limit: 1000, offset: agents.Count, cancellationToken: Aborted).ConfigureAwait(false);
            agents.AddRange(page.Agents);
        }
        while (page.Agents.Count > 0 && agents.Count < page.TotalCount);

        return _agents = agents;
    }

    /// <summary>Whether the request may start a run of the agent (<see cref="AgentPgAdminOptions.AgentFilter"/>): a chat, a
    /// message that continues a conversation, a regeneration. An agent deleted meanwhile is not.</summary>
    public async Task<bool> MayChatWithAsync(Guid agentId)
    {
        if (Options.AgentFilter is not { } filter)
        {
            return true;
        }

        try
        {
            return filter(Http, await Client.GetAgentByIdAsync(agentId, Aborted).ConfigureAwait(false));
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.AgentNotFound)
        {
            return false;
        }
    }

    /// <summary>PathBase + prefix: every link starts with it.</summary>
    public string Base { get; }

    public bool CanAct => !Options.ReadOnly;

    public DateTimeOffset Now => Client.Options.TimeProvider.GetUtcNow();

    public CancellationToken Aborted => Http.RequestAborted;

    /// <summary>A link inside the UI; <paramref name="path"/> is built by the UI from constants and ids, never from input.</summary>
    public string Url(string path) => Base + path;

    public string? Query(string name) => Http.Request.Query.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v.ToString()) ? v.ToString() : null;

    /// <summary>Parses an id from the route or the query; anything else is a 400, never a database error.</summary>
    public static Guid ParseId(string? value, string what)
        => Guid.TryParse(value, CultureInfo.InvariantCulture, out var id)
            ? id
            : throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{value}' is not a valid {what} id (a GUID).");

    /// <summary>The <c>{id}</c> of the route, or 400.</summary>
    public Guid RouteId(string what) => ParseId(Http.Request.RouteValues["id"]?.ToString(), what);

    public Guid? OptionalId(string name, string what) => Query(name) is { } text ? ParseId(text, what) : null;

    /// <summary>The session filter in the query string, or <see langword="null"/>; another tenant's session is a 404 like
    /// opening it.</summary>
    public async Task<Guid?> SessionFilterAsync(string name)
    {
        var id = OptionalId(name, "session");
        if (id is { } filtered)
        {
            await SessionAsync(filtered).ConfigureAwait(false);
        }

        return id;
    }

    /// <summary>The run filter in the query string, or <see langword="null"/>; another tenant's run is a 404 like opening it.</summary>
    public async Task<Guid?> RunFilterAsync(string name)
    {
        var id = OptionalId(name, "run");
        if (id is { } filtered)
        {
            await RunAsync(filtered).ConfigureAwait(false);
        }

        return id;
    }

    /// <summary>One page of a list; a query the client refuses (a filter or cursor from the query string) is a 400, never a
    /// 500.</summary>
    public async Task<ResultPage<T>> PageAsync<T>(Func<AgentPgClient, CancellationToken, Task<ResultPage<T>>> list)
    {
        try
        {
            return await list(Client, Aborted).ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, e.Message);
        }
    }

    /// <summary>The posted form; empty when the POST carries none (its antiforgery token in the header, no body), so an action
    /// reads its optional fields without a 500.</summary>
    public async Task<IFormCollection> FormAsync()
        => Http.Request.HasFormContentType ? await Http.Request.ReadFormAsync(Aborted).ConfigureAwait(false) : FormCollection.Empty;

    public Html AntiforgeryField()
    {
        _tokens ??= Http.RequestServices.GetRequiredService<IAntiforgery>().GetAndStoreTokens(Http);
        return Html.Of($"""<input type="hidden" name="{_tokens.FormFieldName}" value="{_tokens.RequestToken}">""");
    }

    /// <summary>The session if the request's tenant may see it (checked in SQL), else 404.</summary>
    public async Task<Session> SessionAsync(Guid id)
    {
        var page = await Client.ListSessionsAsync(new SessionQuery { Ids = [id], Metadata = Tenant, Limit = 1 }, Aborted).ConfigureAwait(false);
        return page.Items.Count == 1 ? page.Items[0] : throw AdminHttpException.NotFound("session");
    }

    /// <summary>The run if the request's tenant may see it (checked in SQL), else 404.</summary>
    public async Task<Run> RunAsync(Guid id)
    {
        var page = await Client.ListRunsAsync(new RunQuery { Ids = [id], SessionMetadata = Tenant, Limit = 1 }, Aborted).ConfigureAwait(false);
        return page.Items.Count == 1 ? page.Items[0] : throw AdminHttpException.NotFound("run");
    }

    /// <summary>The tool execution if the request's tenant may see it (checked in SQL), else 404.</summary>
    public async Task<ToolExecution> ToolExecutionAsync(Guid id)
    {
        var page = await Client.ListToolExecutionsAsync(new ToolExecutionQuery { Ids = [id], SessionMetadata = Tenant, Limit = 1 }, Aborted)
            .ConfigureAwait(false);
        return page.Items.Count == 1 ? page.Items[0] : throw AdminHttpException.NotFound("tool execution");
    }
}
