namespace AgentPg;

/// <summary>What <see cref="AgentPgClient.GetUsageAsync"/> sums: the filters (each one left <see langword="null"/> matches
/// everything; the ones set must all match), how to group, and the prices.</summary>
public sealed record UsageQuery
{
    /// <summary>Only model calls that completed at or after this instant (database clock).</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Only model calls that completed before this instant (database clock). Must be after <see cref="Since"/>.</summary>
    public DateTimeOffset? Until { get; init; }

    /// <summary>Only calls made for sessions whose metadata contains these entries (JSON containment, as
    /// <see cref="RunQuery.SessionMetadata"/>): the tenant filter, applied in SQL. Delegated runs run in their caller's session,
    /// so a tenant's usage includes its delegation trees.</summary>
    public IReadOnlyDictionary<string, object?>? SessionMetadata { get; init; }

    /// <summary>Only the calls of this agent's runs (compaction summaries, which belong to no agent, are left out).</summary>
    public Guid? AgentId { get; init; }

    /// <summary>Only calls to this model (the model the request named, compared exactly).</summary>
    public string? Model { get; init; }

    /// <summary>Only the calls of this run and of every run it delegated to, at any depth: for a root run, its whole delegation
    /// tree; for a delegated run, its part of the tree. Compaction summaries are left out.</summary>
    public Guid? RootRunId { get; init; }

    /// <summary>Only the calls of this session's runs and its compaction summaries.</summary>
    public Guid? SessionId { get; init; }

    /// <summary>How to group: none (one row, the total), or one or two <see cref="UsageGrouping"/>s, each at most once.</summary>
    public IReadOnlyList<UsageGrouping>? GroupBy { get; init; }

    /// <summary>Model prices for this query, instead of <see cref="AgentPgOptions.ModelPrices"/>; <see langword="null"/> uses
    /// the options'.</summary>
    public IReadOnlyDictionary<string, ModelPrice>? Prices { get; init; }
}

/// <summary>What <see cref="AgentPgClient.GetUsageAsync"/> can group by.</summary>
public enum UsageGroupKind
{
    /// <summary>The UTC day the call completed (<see cref="UsageRow.Day"/>).</summary>
    Day,

    /// <summary>The agent whose run made the call (<see cref="UsageRow.AgentId"/>, <see cref="UsageRow.AgentName"/>).</summary>
    Agent,

    /// <summary>The model the request named (<see cref="UsageRow.Model"/>).</summary>
    Model,

    /// <summary>The run's mode, batch or streaming (<see cref="UsageRow.Mode"/>).</summary>
    RunMode,

    /// <summary>Runs' model calls or compaction summaries (<see cref="UsageRow.Source"/>).</summary>
    Source,

    /// <summary>The value of one key of the session's metadata, for example the tenant (<see cref="UsageRow.SessionMetadata"/>).</summary>
    SessionMetadata,
}

/// <summary>Where the tokens of a <see cref="UsageRow"/> were spent.</summary>
public enum UsageSource
{
    /// <summary>The model calls of runs (every iteration, delegated runs' included).</summary>
    Run,

    /// <summary>The summariser's calls of compactions (<see cref="CompactionEvent"/>).</summary>
    Compaction,
}

/// <summary>One key of <see cref="UsageQuery.GroupBy"/>.</summary>
public sealed record UsageGrouping
{
    private UsageGrouping(UsageGroupKind kind, string? metadataKey) => (Kind, MetadataKey) = (kind, metadataKey);

    /// <summary>Groups by the UTC day the call completed.</summary>
    public static UsageGrouping Day { get; } = new(UsageGroupKind.Day, null);

    /// <summary>Groups by agent.</summary>
    public static UsageGrouping Agent { get; } = new(UsageGroupKind.Agent, null);

    /// <summary>Groups by model.</summary>
    public static UsageGrouping Model { get; } = new(UsageGroupKind.Model, null);

    /// <summary>Groups by run mode.</summary>
    public static UsageGrouping RunMode { get; } = new(UsageGroupKind.RunMode, null);

    /// <summary>Groups runs' calls apart from compaction summaries.</summary>
    public static UsageGrouping Source { get; } = new(UsageGroupKind.Source, null);

    /// <summary>Gets what to group by.</summary>
    public UsageGroupKind Kind { get; }

    /// <summary>Gets the metadata key of <see cref="UsageGroupKind.SessionMetadata"/>; <see langword="null"/> for the others.</summary>
    public string? MetadataKey { get; }

    /// <summary>Groups by the value of a key of the session's metadata (its text; a session without the key is in the
    /// group whose value is <see langword="null"/>).</summary>
    /// <param name="key">The metadata key, for example <c>"tenant_id"</c>.</param>
    /// <returns>The grouping.</returns>
    /// <exception cref="ArgumentException"><paramref name="key"/> is empty or contains U+0000.</exception>
    public static UsageGrouping SessionMetadata(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        Internal.Nul.Reject(key, nameof(key), "The metadata key");
        return new UsageGrouping(UsageGroupKind.SessionMetadata, key);
    }

    /// <summary>Reads a grouping written as <see cref="ToString"/> writes it: <c>day</c>, <c>agent</c>, <c>model</c>,
    /// <c>mode</c>, <c>source</c> or <c>metadata:KEY</c> (for example <c>metadata:tenant_id</c>).</summary>
    /// <param name="text">The grouping's name.</param>
    /// <returns>The grouping.</returns>
    /// <exception cref="ArgumentException"><paramref name="text"/> is none of these.</exception>
    public static UsageGrouping Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        const string metadata = "metadata:";
        if (text.StartsWith(metadata, StringComparison.Ordinal))
        {
            return text.Length > metadata.Length
                ? SessionMetadata(text[metadata.Length..])
                : throw new ArgumentException("A metadata grouping names its key: metadata:KEY, for example metadata:tenant_id.", nameof(text));
        }

        return text switch
        {
            "day" => Day,
            "agent" => Agent,
            "model" => Model,
            "mode" => RunMode,
            "source" => Source,
            _ => throw new ArgumentException(
                $"'{text}' is not a usage grouping; use day, agent, model, mode, source or metadata:KEY (for example metadata:tenant_id).", nameof(text)),
        };
    }

    /// <summary>The grouping's name, as <see cref="Parse"/> reads it.</summary>
    /// <returns><c>day</c>, <c>agent</c>, <c>model</c>, <c>mode</c>, <c>source</c> or <c>metadata:KEY</c>.</returns>
    public override string ToString() => Kind switch
    {
        UsageGroupKind.Day => "day",
        UsageGroupKind.Agent => "agent",
        UsageGroupKind.Model => "model",
        UsageGroupKind.RunMode => "mode",
        UsageGroupKind.Source => "source",
        _ => "metadata:" + MetadataKey,
    };
}
