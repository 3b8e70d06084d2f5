namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Compacts a session's root conversation with <see cref="AgentPgOptions.Compaction"/>.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the compaction; nothing is written once it is cancelled.</param>
    /// <returns>What was done; <see cref="CompactionResult.EventId"/> can undo it (<see cref="RestoreCompactionAsync"/>).</returns>
    /// <remarks>
    /// <para>Old tool outputs are pruned to a placeholder and, when that is not enough (or with
    /// <see cref="CompactionStrategy.Summarization"/>), the old part of the conversation is replaced by a summary written by
    /// <see cref="CompactionOptions.SummarizerModel"/>, as a user turn in its place. The newest part
    /// (<see cref="CompactionOptions.ProtectedTokens"/>, <see cref="CompactionOptions.PreserveLastN"/>), messages of a run
    /// in progress, and delegated runs' conversations are never touched; a tool call is never separated from its result.</para>
    /// <para>Works on a client that is not started (it needs an API key only when a summary must be written). Safe to call
    /// while the session has a run in progress: the run's messages are kept, and the run's next request reads the compacted
    /// conversation.</para>
    /// <para>Removed and rewritten messages are archived in the database, exactly as they were.</para>
    /// </remarks>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/>; <see cref="AgentPgErrorCode.NothingToCompact"/>
    /// when everything is protected; <see cref="AgentPgErrorCode.CompactionFailed"/> when the summariser failed or another
    /// compaction of the session committed first. In every case nothing was changed.</exception>
    /// <exception cref="InvalidOperationException">A summary is needed and no API key is configured.</exception>
    public Task<CompactionResult> CompactAsync(Guid sessionId, CancellationToken cancellationToken = default)
        => CompactAsync(sessionId, _options.Compaction, cancellationToken);

    /// <summary>Compacts a session's root conversation with the given options.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="options">How to compact; validated per field.</param>
    /// <param name="cancellationToken">Cancels the compaction; nothing is written once it is cancelled.</param>
    /// <returns>What was done.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names each one and its fix.</exception>
    /// <exception cref="AgentPgException">As <see cref="CompactAsync(Guid, CancellationToken)"/>.</exception>
    /// <exception cref="InvalidOperationException">A summary is needed and no API key is configured.</exception>
    public async Task<CompactionResult> CompactAsync(Guid sessionId, CompactionOptions options, CancellationToken cancellationToken = default)
    {
        var validated = Validated(options);
        await _schemaCheck.EnsureAsync("Compact", null, cancellationToken).ConfigureAwait(false);
        return (await _engine.Compactor.CompactAsync(sessionId, validated, Compaction.Compactor.ReasonManual, ownRun: null, onlyIfNeeded: false,
            cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Compacts the session when its root conversation has reached <see cref="CompactionOptions.Trigger"/> of
    /// <see cref="CompactionOptions.MaxTokensForModel"/>.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>What was done, or <see langword="null"/> when no compaction was needed.</returns>
    /// <exception cref="AgentPgException">As <see cref="CompactAsync(Guid, CancellationToken)"/>.</exception>
    public async Task<CompactionResult?> CompactIfNeededAsync(Guid sessionId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("CompactIfNeeded", null, cancellationToken).ConfigureAwait(false);
        return await _engine.Compactor.CompactAsync(sessionId, _options.Compaction, Compaction.Compactor.ReasonManual, ownRun: null, onlyIfNeeded: true,
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Gets whether the session's root conversation has reached the compaction trigger.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns><see langword="true"/> when <see cref="CompactIfNeededAsync"/> would compact.</returns>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/>.</exception>
    public async Task<bool> NeedsCompactionAsync(Guid sessionId, CancellationToken cancellationToken = default)
        => (await GetCompactionStatsAsync(sessionId, cancellationToken).ConfigureAwait(false)).NeedsCompaction;

    /// <summary>Gets the size of a session's root conversation and what a compaction could remove.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The statistics; token counts come from Claude's count_tokens when <see cref="CompactionOptions.UseTokenCountingApi"/>
    /// is set and an API key is configured, else from an estimate.</returns>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/>.</exception>
    public async Task<CompactionStats> GetCompactionStatsAsync(Guid sessionId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetCompactionStats", null, cancellationToken).ConfigureAwait(false);
        return await _engine.Compactor.GetStatsAsync(sessionId, _options.Compaction, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Lists a session's compactions, newest first (restored ones included, with <see cref="CompactionEvent.RestoredAt"/>).</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="limit">At most this many events (1 to 1000).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The events.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is outside 1..1000.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/>.</exception>
    public async Task<IReadOnlyList<CompactionEvent>> GetCompactionEventsAsync(Guid sessionId, int limit = 100, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, 1000);
        await _schemaCheck.EnsureAsync("GetCompactionEvents", null, cancellationToken).ConfigureAwait(false);
        return await _engine.Compactor.GetEventsAsync(sessionId, limit, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Undoes the latest compaction of a session still in place: the archived messages come back exactly as they were
    /// (ids, order, content, timestamps) and the summary is removed.</summary>
    /// <param name="compactionEventId">The compaction (<see cref="CompactionResult.EventId"/> or <see cref="CompactionEvent.Id"/>).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the restore committed.</returns>
    /// <remarks>Messages written after the compaction stay, after the restored ones. Restore later compactions first.</remarks>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.CompactionNotFound"/>; <see cref="AgentPgErrorCode.CompactionFailed"/>
    /// when it was restored already or a later compaction of the session is still in place.</exception>
    public async Task RestoreCompactionAsync(Guid compactionEventId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("RestoreCompaction", null, cancellationToken).ConfigureAwait(false);
        await _engine.Compactor.RestoreAsync(compactionEventId, cancellationToken).ConfigureAwait(false);
    }

    private static CompactionOptions Validated(CompactionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Internal.OptionErrors.ThrowIfAny(options.Validate(), nameof(CompactionOptions), nameof(options));
        return options.Clone();
    }
}
