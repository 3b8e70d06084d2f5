using Microsoft.AspNetCore.Http;

namespace AgentPg.AspNetCore;

/// <summary>Options of the admin UI mounted by <c>MapAgentPgAdmin</c>.</summary>
public sealed class AgentPgAdminOptions
{
    /// <summary>Hides every action (cancel, regenerate, approve, reject, chat, delete a session, restore a compaction) and refuses their requests with 403.
    /// Default <see langword="false"/>.</summary>
    public bool ReadOnly { get; set; }

    /// <summary>Serves the UI to requests that no authorization policy protects. Default <see langword="false"/>: unless the
    /// endpoints carry an authorization requirement (<c>.RequireAuthorization(…)</c>), every request is refused with a page
    /// that says how to configure access. Set it only for a UI reachable from your own machine.</summary>
    public bool AllowAnonymous { get; set; }

    /// <summary>The tenant of a request: the metadata entries a session must contain for the request to see it, its runs,
    /// their tool executions and their counts, or <see langword="null"/> to see everything (an empty dictionary, which
    /// requires nothing, also sees everything). Applied in SQL on every page, fragment, stream and action; another tenant's id
    /// answers 404. Sessions created from the chat page get these entries; a session is deleted only when every session of its
    /// tree (its child sessions go with it) contains them. A user without the claim gets
    /// <c>["tenant"] = null</c> from the example, which sees the sessions whose entry is null: require the claim in the
    /// authorization policy.</summary>
    /// <example><c>o.TenantFilter = http => new Dictionary&lt;string, object?&gt; { ["tenant"] = http.User.FindFirst("tenant")?.Value };</c></example>
    public Func<HttpContext, IReadOnlyDictionary<string, object?>?>? TenantFilter { get; set; }

    /// <summary>Which agents a request sees, for an application whose agents belong to tenants: return
    /// <see langword="true"/> to show the agent on the Agents page, in the chat page's choice of agent and in the runs' agent
    /// filter, and to let the request start a conversation with it. <see langword="null"/> (the default) shows every agent.
    /// Runs are still shown by <see cref="TenantFilter"/>, with the name of the agent that ran them; a session holding runs of
    /// a hidden agent (or a child session that does) cannot be deleted by the request.</summary>
    /// <example><c>o.AgentFilter = (http, agent) => !agent.Metadata.TryGetValue("tenant", out var t) || Equals(t?.ToString(), http.User.FindFirst("tenant")?.Value);</c></example>
    public Func<HttpContext, AgentDefinition, bool>? AgentFilter { get; set; }

    /// <summary>Rows per page of the lists, 1 to 1 000. Default 25.</summary>
    public int PageSize { get; set; } = 25;

    /// <summary>How long a run's live stream (server-sent events) may stay silent before the UI sends a comment line to keep
    /// the connection open, for proxies and load balancers that close idle connections (often after 60 s): a run waiting for a
    /// person or a long tool call sends nothing for minutes. 1 second to 1 hour, or <see cref="Timeout.InfiniteTimeSpan"/> for
    /// none. Default 15 seconds.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);

    internal void Validate()
    {
        if (KeepAliveInterval != Timeout.InfiniteTimeSpan && (KeepAliveInterval < TimeSpan.FromSeconds(1) || KeepAliveInterval > TimeSpan.FromHours(1)))
        {
            throw new ArgumentException($"AgentPgAdminOptions.KeepAliveInterval must be 1 second to 1 hour, or Timeout.InfiniteTimeSpan for none (was {KeepAliveInterval}).",
                nameof(KeepAliveInterval));
        }

        if (PageSize is < 1 or > 1000)
        {
            throw new ArgumentException($"AgentPgAdminOptions.PageSize must be 1 to 1000 (was {PageSize}).", nameof(PageSize));
        }
    }
}
