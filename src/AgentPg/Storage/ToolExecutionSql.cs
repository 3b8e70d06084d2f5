using System.Text.Json;
using AgentPg.Internal;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_tool_executions.</summary>
internal sealed class ToolExecutionSql
{
    public const string Columns =
        "te.id, te.run_id, te.iteration_id, te.state::text, te.tool_use_id, te.tool_name, te.tool_input::text, te.is_agent_tool, " +
        "te.agent_id, te.child_run_id, te.tool_output, te.is_error, te.error_message, te.claimed_by_instance_id, te.claim_epoch, " +
        "te.attempt_count, te.max_attempts, te.scheduled_at, te.snooze_count, te.last_error, te.created_at, te.started_at, te.completed_at, te.tool_output_content::text";

    // After the iteration number (NextColumn) in the tool-call queries: NextColumn + 1 .. NextColumn + 6.
    private const string ApprovalColumns =
        "te.approval_required, te.approval_decision, te.approval_comment, te.approval_decided_by, te.approval_decided_at, " +
        "te.approval_original_input::text";

    public ToolExecutionSql(SchemaName s)
    {
        var t = $"{s}.agentpg_tool_executions";
        // Claimed executions with what the worker needs to run them: the run's session, agent, variables and depth,
        // and the iteration number. $1 instance, $2 max count.
        Claim = $"""
            SELECT {Columns}, r.session_id, r.agent_id, r.metadata::text, r.depth, i.iteration_number, r.traceparent, te.is_memory_tool
              FROM {s}.agentpg_claim_tool_executions($1, $2) te
              JOIN {s}.agentpg_runs r ON r.id = te.run_id
              JOIN {s}.agentpg_iterations i ON i.id = te.iteration_id
            """;
        Fence = $"SELECT {s}.agentpg_fence_tool_execution($1, $2, $3)";
        // $1 id, $2 instance, $3 epoch. The execution is still claimed by this instance under this epoch, read without a lock:
        // no row lock, so no transaction id, no WAL and no commit to flush. When it is not, the fence raises AP001 (it finds
        // the execution as this statement's snapshot did, or later still: an epoch only grows and a terminal state stays).
        StillClaimed = $"""
            SELECT {s}.agentpg_fence_tool_execution($1, $2, $3)
             WHERE NOT EXISTS (SELECT 1 FROM {t}
                                WHERE id = $1 AND claimed_by_instance_id = $2 AND claim_epoch = $3 AND state = 'running')
            """;
        // $1 id, $2 state, $3 output, $4 is_error, $5 error message, $6 content blocks (NULL for text). After the fence.
        Complete = $"""
            UPDATE {t}
               SET state = $2::{s}.agentpg_tool_execution_state, tool_output = $3, is_error = $4, error_message = $5, tool_output_content = $6,
                   completed_at = now(), claimed_by_instance_id = NULL
             WHERE id = $1
            """;
        // $1 run. After Complete in the same transaction: the run's mode when that result was the iteration's last one and
        // continued the run (agentpg_trg_tools_complete put it back to pending), so the worker wakes its own run worker at
        // once instead of waiting for the NOTIFY to come back.
        ContinuedRunMode = $"SELECT run_mode::text AS continued_run_mode FROM {s}.agentpg_runs WHERE id = $1 AND state = 'pending'";
        // $1 id, $2 delay, $3 error. After the fence.
        Retry = $"""
            UPDATE {t}
               SET state = 'pending', claimed_by_instance_id = NULL, claimed_at = NULL, started_at = NULL,
                   scheduled_at = now() + $2, last_error = $3
             WHERE id = $1
            """;
        // $1 id, $2 delay, $3 reason. Gives back the attempt the claim took. After the fence.
        Snooze = $"""
            UPDATE {t}
               SET state = 'pending', claimed_by_instance_id = NULL, claimed_at = NULL, started_at = NULL,
                   scheduled_at = now() + $2, attempt_count = greatest(0, attempt_count - 1), snooze_count = snooze_count + 1,
                   last_error = $3
             WHERE id = $1
            """;
        // $1 id, $2 reason, $3 most interruptions. After the fence. The attempt was interrupted by the database (no
        // connection, connection lost), not by the tool: give it back, count the interruption (like a rescue) and fail the
        // execution once there were more than $3.
        Release = $"""
            UPDATE {t}
               SET state = CASE WHEN rescue_attempts + 1 > $3 THEN 'failed' ELSE 'pending' END::{s}.agentpg_tool_execution_state,
                   is_error = rescue_attempts + 1 > $3,
                   error_message = CASE WHEN rescue_attempts + 1 > $3
                                        THEN 'Tool execution was interrupted ' || (rescue_attempts + 1) || ' times; last: ' || $2 END,
                   completed_at = CASE WHEN rescue_attempts + 1 > $3 THEN now() END,
                   rescue_attempts = rescue_attempts + 1,
                   attempt_count = greatest(attempt_count - 1, 0),
                   claimed_by_instance_id = NULL, claimed_at = NULL, started_at = NULL, scheduled_at = now(), last_error = $2
             WHERE id = $1
            """;
        // $1 id, $2 instance, $3 reason. After the fence. The tool is no longer registered on instance $2 (unregistered after the
        // claim): back to pending, the attempt given back, when another instance registers it; no row otherwise.
        HandBack = $"""
            UPDATE {t} te
               SET state = 'pending', claimed_by_instance_id = NULL, claimed_at = NULL, started_at = NULL,
                   attempt_count = greatest(attempt_count - 1, 0), scheduled_at = now(), last_error = $3
             WHERE te.id = $1
               AND EXISTS (SELECT 1 FROM {s}.agentpg_instance_tools it WHERE it.tool_name = te.tool_name AND it.instance_id <> $2)
            RETURNING te.run_id AS handed_back
            """;
        // $1 id. After HandBack in the same transaction: wakes the tool workers of every instance when it was handed back.
        HandBackNotify = $"""
            SELECT {s}.agentpg_notify('agentpg_tool_pending', json_build_object('run_id', te.run_id)::text)
              FROM {t} te
             WHERE te.id = $1 AND te.state = 'pending' AND te.claimed_by_instance_id IS NULL
            """;
        ByRun = $"""
            SELECT {Columns}, i.iteration_number, {ApprovalColumns}
              FROM {t} te JOIN {s}.agentpg_iterations i ON i.id = te.iteration_id
             WHERE te.run_id = $1
             ORDER BY i.iteration_number, te.position, te.created_at
            """;
        ByIteration = $"""
            SELECT {Columns}, i.iteration_number, {ApprovalColumns}
              FROM {t} te JOIN {s}.agentpg_iterations i ON i.id = te.iteration_id
             WHERE te.iteration_id = $1
             ORDER BY te.position, te.created_at
            """;
        // Agent as tool: the child run answering execution $4 of run $1, for delegate agent $2 with task $3, created by
        // instance $5. Same session, depth + 1, the parent's variables and mode (instruction overrides stay with the
        // parent). No row comes back when the delegate already works further up the chain (a cycle). The execution stays
        // running without a holder; the child's completion finishes it.
        CreateChildRun = $"""
            WITH RECURSIVE ancestors AS (
                SELECT id, agent_id, parent_run_id FROM {s}.agentpg_runs WHERE id = $1
                UNION ALL
                SELECT r.id, r.agent_id, r.parent_run_id FROM {s}.agentpg_runs r JOIN ancestors a ON r.id = a.parent_run_id
            ), child AS (
                INSERT INTO {s}.agentpg_runs (session_id, agent_id, prompt, run_mode, parent_run_id, parent_tool_execution_id, depth,
                                              created_by_instance_id, metadata, traceparent, options)
                SELECT p.session_id, $2, $3, p.run_mode, p.id, $4, p.depth + 1, $5, p.metadata, coalesce($6, p.traceparent),
                       -- The tree's token budget goes down with it: a root's comes from its options or else its agent, a child's
                       -- is its root's already. No budget leaves an empty object.
                       jsonb_strip_nulls(jsonb_build_object('token_budget',
                           CASE WHEN p.parent_run_id IS NULL THEN coalesce((p.options->>'token_budget')::bigint, pa.token_budget)
                                ELSE (p.options->>'token_budget')::bigint END))
                  FROM {s}.agentpg_runs p
                  JOIN {s}.agentpg_agents pa ON pa.id = p.agent_id
                 WHERE p.id = $1 AND NOT EXISTS (SELECT 1 FROM ancestors WHERE agent_id = $2)
                RETURNING id
            )
            UPDATE {t} te SET child_run_id = child.id, claimed_by_instance_id = NULL
              FROM child
             WHERE te.id = $4
            RETURNING child.id
            """;
        ByChildRun = $"""
            SELECT {Columns}, i.iteration_number, {ApprovalColumns}, r.session_id
              FROM {t} te JOIN {s}.agentpg_iterations i ON i.id = te.iteration_id JOIN {s}.agentpg_runs r ON r.id = te.run_id
             WHERE te.child_run_id = $1
            """;
    }

    public string Claim { get; }

    public string Fence { get; }

    public string StillClaimed { get; }

    public string Complete { get; }

    public string ContinuedRunMode { get; }

    public string Retry { get; }

    public string Snooze { get; }

    public string Release { get; }

    public string HandBack { get; }

    public string HandBackNotify { get; }

    public string ByRun { get; }

    public string ByIteration { get; }

    public string CreateChildRun { get; }

    public string ByChildRun { get; }

    /// <summary>Adds <see cref="Claim"/>: up to <paramref name="count"/> due executions for the instance; read each row with
    /// <see cref="ReadClaimed"/>.</summary>
    public void AddClaim(NpgsqlBatch batch, string instanceId, int count) => batch.Append(Claim, P.Text(instanceId), P.Int(count));

    /// <summary>Reads a row of <see cref="Claim"/>: the execution, then what the worker needs of its run and iteration.</summary>
    public static ClaimedTool ReadClaimed(NpgsqlDataReader r)
    {
        const int c = NextColumn;
        return new ClaimedTool(Read(r), r.GetGuid(c), r.GetGuid(c + 1), r.GetString(c + 2), r.GetInt32(c + 3), r.GetInt32(c + 4))
        {
            TraceParent = r.IsDBNull(c + 5) ? null : r.GetString(c + 5),
            IsMemoryTool = r.GetBoolean(c + 6),
        };
    }

    /// <summary>Adds <see cref="Fence"/> for the execution's claim by <paramref name="instanceId"/>.</summary>
    public void AddFence(NpgsqlBatch batch, ToolExecution execution, string instanceId)
        => batch.Append(Fence, P.Uuid(execution.Id), P.Text(instanceId), P.Long(execution.ClaimEpoch));

    /// <summary>Adds <see cref="StillClaimed"/> for the execution's claim by <paramref name="instanceId"/>.</summary>
    public void AddStillClaimed(NpgsqlBatch batch, ToolExecution execution, string instanceId)
        => batch.Append(StillClaimed, P.Uuid(execution.Id), P.Text(instanceId), P.Long(execution.ClaimEpoch));

    /// <summary>A command for <see cref="StillClaimed"/> on <paramref name="connection"/> (no transaction).</summary>
    public NpgsqlCommand StillClaimedCommand(NpgsqlConnection connection, ToolExecution execution, string instanceId)
    {
        var command = new NpgsqlCommand(StillClaimed, connection);
        command.Parameters.Add(P.Uuid(execution.Id));
        command.Parameters.Add(P.Text(instanceId));
        command.Parameters.Add(P.Long(execution.ClaimEpoch));
        return command;
    }

    /// <summary>Adds <see cref="Complete"/>; U+0000 in the texts is replaced (see <see cref="Nul"/>).</summary>
    public void AddComplete(NpgsqlBatch batch, Guid executionId, ToolExecutionState state, string? output, bool isError, string? errorMessage,
        string? blocksJson)
        => batch.Append(Complete, P.Uuid(executionId), P.Text(state.ToDb()), P.Text(Nul.Replace(output)), P.Bool(isError),
            P.Text(Nul.Replace(errorMessage)), P.Jsonb(blocksJson));

    /// <summary>Adds <see cref="ContinuedRunMode"/> for the run; read the batch with <see cref="ReadContinuedRunModeAsync"/>.</summary>
    public void AddContinuedRunMode(NpgsqlBatch batch, Guid runId) => batch.Append(ContinuedRunMode, P.Uuid(runId));

    /// <summary>Reads every result of a batch holding <see cref="ContinuedRunMode"/>: the mode of the run the result continued,
    /// or null when other executions are still open.</summary>
    public static async Task<string?> ReadContinuedRunModeAsync(NpgsqlDataReader reader, CancellationToken cancellationToken)
    {
        string? mode = null;
        do
        {
            if (reader.FieldCount == 1 && reader.GetName(0) == "continued_run_mode" && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                mode = reader.GetString(0);
            }
        }
        while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));

        return mode;
    }

    /// <summary>Adds <see cref="Retry"/> after <paramref name="delay"/>.</summary>
    public void AddRetry(NpgsqlBatch batch, Guid executionId, TimeSpan delay, string error)
        => batch.Append(Retry, P.Uuid(executionId), P.Interval(delay), P.Text(Nul.Replace(error)));

    /// <summary>Adds <see cref="Snooze"/> for <paramref name="delay"/>.</summary>
    public void AddSnooze(NpgsqlBatch batch, Guid executionId, TimeSpan delay, string reason)
        => batch.Append(Snooze, P.Uuid(executionId), P.Interval(delay), P.Text(Nul.Replace(reason)));

    /// <summary>Adds <see cref="Release"/>: failed once interrupted more than <paramref name="maxInterruptions"/> times.</summary>
    public void AddRelease(NpgsqlBatch batch, Guid executionId, string reason, int maxInterruptions)
        => batch.Append(Release, P.Uuid(executionId), P.Text(Nul.Replace(reason)), P.Int(maxInterruptions));

    /// <summary>Adds <see cref="HandBack"/> and <see cref="HandBackNotify"/>; read the batch with <see cref="ReadHandedBackAsync"/>.</summary>
    public void AddHandBack(NpgsqlBatch batch, Guid executionId, string instanceId, string reason)
    {
        batch.Append(HandBack, P.Uuid(executionId), P.Text(instanceId), P.Text(Nul.Replace(reason)));
        batch.Append(HandBackNotify, P.Uuid(executionId));
    }

    /// <summary>Reads every result of a batch holding <see cref="HandBack"/>: whether the execution was handed back.</summary>
    public static async Task<bool> ReadHandedBackAsync(NpgsqlDataReader reader, CancellationToken cancellationToken)
    {
        var handedBack = false;
        do
        {
            if (reader.FieldCount == 1 && reader.GetName(0) == "handed_back" && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                handedBack = true;
            }
        }
        while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));

        return handedBack;
    }

    /// <summary>Adds <see cref="CreateChildRun"/> for the agent-tool execution; its result is the child run's id, or no row
    /// (a delegation cycle), read with <see cref="ReadChildRunId"/>.</summary>
    public void AddCreateChildRun(NpgsqlBatch batch, ToolExecution execution, Guid delegateAgentId, string task, string instanceId, string? traceParent)
        => batch.Append(CreateChildRun, P.Uuid(execution.RunId), P.Uuid(delegateAgentId), P.Text(task), P.Uuid(execution.Id), P.Text(instanceId),
            P.Text(traceParent));

    /// <summary>Reads the row of <see cref="CreateChildRun"/>.</summary>
    public static Guid ReadChildRunId(NpgsqlDataReader r) => r.GetGuid(0);

    public static ToolExecution Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(0),
        RunId = r.GetGuid(1),
        IterationId = r.GetGuid(2),
        State = DbEnums.ParseToolExecutionState(r.GetString(3)),
        ToolUseId = r.GetString(4),
        ToolName = r.GetString(5),
        ToolInput = ParseJson(r.GetString(6)),
        IsAgentTool = r.GetBoolean(7),
        AgentId = r.IsDBNull(8) ? null : r.GetGuid(8),
        ChildRunId = r.IsDBNull(9) ? null : r.GetGuid(9),
        ToolOutput = r.IsDBNull(10) ? null : r.GetString(10),
        IsError = r.GetBoolean(11),
        ErrorMessage = r.IsDBNull(12) ? null : r.GetString(12),
        ClaimedByInstanceId = r.IsDBNull(13) ? null : r.GetString(13),
        ClaimEpoch = r.GetInt64(14),
        AttemptCount = r.GetInt32(15),
        MaxAttempts = r.GetInt32(16),
        ScheduledAt = r.GetFieldValue<DateTimeOffset>(17),
        SnoozeCount = r.GetInt32(18),
        LastError = r.IsDBNull(19) ? null : r.GetString(19),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(20),
        StartedAt = r.IsDBNull(21) ? null : r.GetFieldValue<DateTimeOffset>(21),
        CompletedAt = r.IsDBNull(22) ? null : r.GetFieldValue<DateTimeOffset>(22),
        ToolOutputBlocks = r.IsDBNull(23) ? [] : ContentBlocks.FromJsonArray(r.GetString(23)),
    };

    // Client (AgentPgClient.Runs).

    /// <summary>The tool calls of a run, in the order Claude made them.</summary>
    public Task<List<ToolCall>> CallsOfRunAsync(NpgsqlDataSource dataSource, Guid runId, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, ByRun, P.Uuid(runId)).QueryListAsync(ReadToolCall, cancellationToken);

    /// <summary>The tool calls one iteration asked for.</summary>
    public Task<List<ToolCall>> CallsOfIterationAsync(NpgsqlDataSource dataSource, Guid iterationId, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, ByIteration, P.Uuid(iterationId)).QueryListAsync(ReadToolCall, cancellationToken);

    /// <summary>Adds <see cref="ByRun"/> (rows for <see cref="ReadToolCall"/>).</summary>
    public void AddCallsOfRun(NpgsqlBatch batch, Guid runId) => batch.Append(ByRun, P.Uuid(runId));

    /// <summary>The index of the first column after <see cref="Columns"/>.</summary>
    public const int NextColumn = 24;

    /// <summary>The index of the first column after the iteration number and the approval columns of the tool-call queries.</summary>
    public const int AfterToolCallColumns = NextColumn + 7;

    /// <summary>The event of the agent tool whose child run is <paramref name="childRunId"/>, once the child finished and the
    /// trigger completed the parent's execution; null when there is none.</summary>
    public static async Task<ToolCallEvent?> ReadAgentToolEventAsync(NpgsqlDataSource dataSource, Sql sql, Guid childRunId, CancellationToken cancellationToken)
    {
        var command = Db.Command(dataSource, null, sql.ToolExecutions.ByChildRun, P.Uuid(childRunId));
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }

                var call = ReadToolCall(reader);
                var execution = Read(reader);
                return new ToolCallEvent
                {
                    RunId = execution.RunId,
                    SessionId = reader.GetGuid(AfterToolCallColumns),
                    ToolName = call.Name,
                    ToolInput = call.Input,
                    IsAgentTool = true,
                    IterationNumber = call.IterationNumber,
                    Output = call.Output,
                    IsError = call.IsError,
                    ErrorMessage = call.ErrorMessage.Length == 0 ? null : call.ErrorMessage,
                    Duration = call.Duration,
                };
            }
        }
    }

    public static ToolCall ReadToolCall(NpgsqlDataReader r)
    {
        var e = Read(r);
        return new ToolCall
        {
            Name = e.ToolName,
            Input = e.ToolInput,
            Output = e.ToolOutput ?? "",
            IsError = e.IsError,
            ErrorMessage = e.ErrorMessage ?? "",
            IsAgentTool = e.IsAgentTool,
            AgentId = e.AgentId,
            ChildRunId = e.ChildRunId,
            Duration = e.StartedAt is { } started && e.CompletedAt is { } completed && completed > started ? completed - started : TimeSpan.Zero,
            OutputBlocks = e.ToolOutputBlocks,
            IterationNumber = r.GetInt32(NextColumn),
            State = e.State,
            StartedAt = e.StartedAt,
            CompletedAt = e.CompletedAt,
            RequiresApproval = r.GetBoolean(NextColumn + 1),
            Approval = r.IsDBNull(NextColumn + 2) ? null : new ToolApproval
            {
                Approved = r.GetString(NextColumn + 2) == "approved",
                Comment = r.IsDBNull(NextColumn + 3) ? null : r.GetString(NextColumn + 3),
                DecidedBy = r.IsDBNull(NextColumn + 4) ? null : r.GetString(NextColumn + 4),
                DecidedAt = r.GetFieldValue<DateTimeOffset>(NextColumn + 5),
                OriginalInput = r.IsDBNull(NextColumn + 6) ? null : ParseJson(r.GetString(NextColumn + 6)),
            },
        };
    }

    public static JsonElement ParseJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.Clone();
    }
}
