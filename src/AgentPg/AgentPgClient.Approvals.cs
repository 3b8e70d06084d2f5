using System.Data.Common;
using System.Text.Json;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Storage;
using AgentPg.Tools;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Lists tool calls waiting for a person's decision (<see cref="AgentDefinition.ToolsRequiringApproval"/>), oldest first,
    /// at any agent depth.</summary>
    /// <param name="sessionId">Only this session's requests; <see langword="null"/> for every session.</param>
    /// <param name="metadata">Key/values the session's metadata must contain (for example a tenant id), so an application can
    /// build a per-tenant inbox; <see langword="null"/> matches any.</param>
    /// <param name="limit">The most requests returned, 1 to 1000.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The requests; each carries the run that asked, its root run and depth.</returns>
    /// <remarks>Works on any client, started or not. A request stays listed until it is approved, rejected, timed out
    /// (<see cref="AgentPgOptions.ApprovalTimeout"/>) or its run is cancelled.</remarks>
    public async Task<IReadOnlyList<ToolApprovalRequest>> GetPendingApprovalsAsync(Guid? sessionId = null, IReadOnlyDictionary<string, object?>? metadata = null,
        int limit = 100, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, 1000);
        var filter = JsonMapping.ToJsonObject(metadata, nameof(metadata));
        await _schemaCheck.EnsureAsync("GetPendingApprovals", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Approvals.PendingAsync(_dataSource, sessionId, filter, limit, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Approves a tool call that waits for a decision: the tool runs on any started instance that has it.</summary>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="input">A corrected input to run the tool with instead of Claude's; validated against the tool's schema.
    /// <see langword="null"/> runs it with Claude's input.</param>
    /// <param name="comment">A comment stored with the decision.</param>
    /// <param name="cancellationToken">Cancels the request (nothing is decided then).</param>
    /// <returns>A task that completes when the decision is committed.</returns>
    /// <remarks>Works on any client, started or not, on any instance; the decision wakes the tool workers of every instance.
    /// Exactly one decision wins: a second one, concurrent or later, throws <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</remarks>
    /// <exception cref="ArgumentException"><paramref name="input"/> does not match the tool's schema (the message says what is
    /// wrong), or it and <paramref name="comment"/> are longer together than <see cref="AgentPgOptions.MaxToolOutputLength"/>
    /// (Claude reads both with every later request); the request stays waiting.</exception>
    /// <exception cref="AgentPgException">No tool execution has that id (<see cref="AgentPgErrorCode.ToolExecutionNotFound"/>), or
    /// it is not waiting for a decision (<see cref="AgentPgErrorCode.ApprovalNotPending"/>).</exception>
    public Task ApproveToolCallAsync(Guid toolExecutionId, JsonElement? input = null, string? comment = null, CancellationToken cancellationToken = default)
        => DecideAsync(null, toolExecutionId, true, input, comment, null, "ApproveToolCall", cancellationToken);

    /// <summary>Approves a tool call and records who decided.</summary>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="input">A corrected input, or <see langword="null"/> for Claude's.</param>
    /// <param name="comment">A comment stored with the decision.</param>
    /// <param name="decidedBy">Who decided (a user id or name), stored with the decision and shown in <see cref="ToolApproval.DecidedBy"/>.</param>
    /// <param name="cancellationToken">Cancels the request (nothing is decided then).</param>
    /// <returns>A task that completes when the decision is committed.</returns>
    /// <exception cref="ArgumentException"><paramref name="input"/> does not match the tool's schema, or it and <paramref name="comment"/>
    /// are longer together than <see cref="AgentPgOptions.MaxToolOutputLength"/>; the request stays waiting.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</exception>
    public Task ApproveToolCallAsync(Guid toolExecutionId, JsonElement? input, string? comment, string? decidedBy, CancellationToken cancellationToken = default)
        => DecideAsync(null, toolExecutionId, true, input, comment, decidedBy, "ApproveToolCall", cancellationToken);

    /// <summary>Approves a tool call inside the caller's transaction: the decision commits (and the tool may run) only if the
    /// transaction commits, together with the caller's own writes (an audit row, a business change).</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="input">A corrected input, or <see langword="null"/> for Claude's.</param>
    /// <param name="comment">A comment stored with the decision.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the decision is written in the transaction.</returns>
    /// <remarks>The execution's run row stays locked until the transaction ends: commit promptly. A rollback leaves the request
    /// waiting.</remarks>
    /// <exception cref="ArgumentException">The transaction is not an open Npgsql transaction on the client's database, or
    /// <paramref name="input"/> does not match the tool's schema or is, with <paramref name="comment"/>, longer than
    /// <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>,
    /// also when, at REPEATABLE READ or SERIALIZABLE, another decision committed after the transaction's snapshot (the
    /// <see cref="PostgresException"/> is the inner exception, and the transaction must be rolled back).</exception>
    public Task ApproveToolCallAsync(DbTransaction transaction, Guid toolExecutionId, JsonElement? input = null, string? comment = null,
        CancellationToken cancellationToken = default)
        => DecideAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), toolExecutionId, true, input, comment, null,
            "ApproveToolCall", cancellationToken);

    /// <summary>Approves a tool call inside the caller's transaction and records who decided.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="input">A corrected input, or <see langword="null"/> for Claude's.</param>
    /// <param name="comment">A comment stored with the decision.</param>
    /// <param name="decidedBy">Who decided.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the decision is written in the transaction.</returns>
    /// <exception cref="ArgumentException">The transaction is not usable, or <paramref name="input"/> does not match the tool's schema or
    /// is, with <paramref name="comment"/>, longer than <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>,
    /// also when, at REPEATABLE READ or SERIALIZABLE, another decision committed after the transaction's snapshot (the
    /// <see cref="PostgresException"/> is the inner exception, and the transaction must be rolled back).</exception>
    public Task ApproveToolCallAsync(DbTransaction transaction, Guid toolExecutionId, JsonElement? input, string? comment, string? decidedBy,
        CancellationToken cancellationToken = default)
        => DecideAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), toolExecutionId, true, input, comment, decidedBy,
            "ApproveToolCall", cancellationToken);

    /// <summary>Rejects a tool call that waits for a decision: the tool never runs and Claude receives an error tool_result with the
    /// reason.</summary>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="reason">Why; Claude reads it ("The tool call was rejected by the approver: REASON").</param>
    /// <param name="cancellationToken">Cancels the request (nothing is decided then).</param>
    /// <returns>A task that completes when the decision is committed.</returns>
    /// <remarks>When it was the last open call of its iteration, the run continues at once on any started instance.</remarks>
    /// <exception cref="ArgumentException"><paramref name="reason"/> is empty, or longer than <see cref="AgentPgOptions.MaxToolOutputLength"/>
    /// (Claude reads it with every later request of the session).</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</exception>
    public Task RejectToolCallAsync(Guid toolExecutionId, string reason, CancellationToken cancellationToken = default)
        => DecideAsync(null, toolExecutionId, false, null, RequireReason(reason), null, "RejectToolCall", cancellationToken);

    /// <summary>Rejects a tool call and records who decided.</summary>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="reason">Why; Claude reads it.</param>
    /// <param name="decidedBy">Who decided.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the decision is committed.</returns>
    /// <exception cref="ArgumentException"><paramref name="reason"/> is empty, or longer than <see cref="AgentPgOptions.MaxToolOutputLength"/>
    /// (Claude reads it with every later request of the session).</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</exception>
    public Task RejectToolCallAsync(Guid toolExecutionId, string reason, string? decidedBy, CancellationToken cancellationToken = default)
        => DecideAsync(null, toolExecutionId, false, null, RequireReason(reason), decidedBy, "RejectToolCall", cancellationToken);

    /// <summary>Rejects a tool call inside the caller's transaction.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="reason">Why; Claude reads it.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the decision is written in the transaction.</returns>
    /// <remarks>The run continues only when the transaction commits; a rollback leaves the request waiting.</remarks>
    /// <exception cref="ArgumentException">The transaction is not usable, or <paramref name="reason"/> is empty or longer than
    /// <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>,
    /// also when, at REPEATABLE READ or SERIALIZABLE, another decision committed after the transaction's snapshot (the
    /// <see cref="PostgresException"/> is the inner exception, and the transaction must be rolled back).</exception>
    public Task RejectToolCallAsync(DbTransaction transaction, Guid toolExecutionId, string reason, CancellationToken cancellationToken = default)
        => DecideAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), toolExecutionId, false, null, RequireReason(reason), null,
            "RejectToolCall", cancellationToken);

    /// <summary>Rejects a tool call inside the caller's transaction and records who decided.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="reason">Why; Claude reads it.</param>
    /// <param name="decidedBy">Who decided.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the decision is written in the transaction.</returns>
    /// <exception cref="ArgumentException">The transaction is not usable, or <paramref name="reason"/> is empty or longer than
    /// <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>,
    /// also when, at REPEATABLE READ or SERIALIZABLE, another decision committed after the transaction's snapshot (the
    /// <see cref="PostgresException"/> is the inner exception, and the transaction must be rolled back).</exception>
    public Task RejectToolCallAsync(DbTransaction transaction, Guid toolExecutionId, string reason, string? decidedBy, CancellationToken cancellationToken = default)
        => DecideAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), toolExecutionId, false, null, RequireReason(reason), decidedBy,
            "RejectToolCall", cancellationToken);

    private string RequireReason(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        if (string.IsNullOrWhiteSpace(reason))
        {
            throw new ArgumentException("The rejection reason is empty; Claude reads it to decide what to do instead, so say why.", nameof(reason));
        }

        // Claude reads it in the call's tool_result with every later request of the session, and compaction never prunes it: a
        // reason over the limit a tool's error is cut to would fill the context window of this run and of the session's next ones.
        if (_options.MaxToolOutputLength is { } max && reason.Length > max)
        {
            throw new ArgumentException(
                $"The rejection reason has {reason.Length} characters, more than AgentPgOptions.MaxToolOutputLength ({max}): Claude reads it in the " +
                "call's tool_result with every later request of the session, and compaction keeps it whole. Shorten it; nothing was decided.",
                nameof(reason));
        }

        Nul.Reject(reason, nameof(reason), "The rejection reason");
        return reason;
    }

    private async Task DecideAsync(NpgsqlTransaction? transaction, Guid toolExecutionId, bool approve, JsonElement? input, string? comment,
        string? decidedBy, string operation, CancellationToken cancellationToken)
    {
        Nul.Reject(comment, nameof(comment), "The comment");
        Nul.Reject(decidedBy, nameof(decidedBy), "decidedBy");
        await _schemaCheck.EnsureAsync(operation, transaction, cancellationToken).ConfigureAwait(false);
        string? inputJson = null;
        if (input is { } edited)
        {
            inputJson = await ValidateEditedInputAsync(transaction, toolExecutionId, edited, comment, operation, cancellationToken).ConfigureAwait(false);
        }

        string outcome;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                outcome = await _sql.Approvals.DecideAsync(_dataSource, transaction, toolExecutionId, approve, inputJson, comment, decidedBy, cancellationToken)
                    .ConfigureAwait(false);
                break;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.SerializationFailure)
            {
                // REPEATABLE READ or SERIALIZABLE (the caller's transaction, or default_transaction_isolation for our own): the
                // request or its run changed after the snapshot was taken, most often by a decision that committed first. The
                // snapshot cannot show what happened and the transaction is aborted, so look on a connection of our own.
                if (await ConflictingDecisionAsync(transaction is not null, toolExecutionId, operation, ex, cancellationToken).ConfigureAwait(false) is { } decided)
                {
                    throw decided;
                }

                // Still waiting: something else changed the run (a sibling call completed, say). The caller's transaction is
                // doomed and is the caller's to retry; our own statement simply takes a new snapshot.
                if (transaction is not null || attempt == MaxDecisionAttempts)
                {
                    throw;
                }
            }
        }

        switch (outcome)
        {
            case "not_found":
                throw ToolExecutionNotFound(toolExecutionId, operation);
            case "not_pending":
                throw await ApprovalNotPendingAsync(transaction, toolExecutionId, operation, cancellationToken).ConfigureAwait(false);
        }

        Log.ToolCallDecided(_logger, toolExecutionId, outcome, decidedBy ?? "(unnamed)");
        if (transaction is null && _started)
        {
            // The NOTIFY reaches every instance at commit; waking the local workers directly saves its delivery.
            if (approve)
            {
                _engine.ToolWake.Set();
            }
            else
            {
                _engine.StreamingWake.Set();
                _engine.BatchWake.Set();
            }
        }
    }

    /// <summary>Checks an approver's edited input against the tool's schema: this client's registration of the tool when it has
    /// one, otherwise the schema the executing instances stored in agentpg_tools; a delegate agent takes <c>{"task": …}</c>, and
    /// Claude's memory tool a well-formed memory command.</summary>
    private async Task<string> ValidateEditedInputAsync(NpgsqlTransaction? transaction, Guid toolExecutionId, JsonElement input, string? comment,
        string operation, CancellationToken cancellationToken)
    {
        if (input.ValueKind == JsonValueKind.Undefined)
        {
            throw new ArgumentException("The edited input is a default JsonElement, which holds no JSON; pass null to run the tool with " +
                "Claude's input, or the edited input as a JSON object.", nameof(input));
        }

        var raw = input.GetRawText();
        Nul.RejectInJson(raw, nameof(input), "The edited input");

        // Both start the call's tool_result ("The approver changed the input …"), sent with every later request of the session and
        // kept whole by compaction: together at most what a tool's output is cut to.
        if (_options.MaxToolOutputLength is { } max && raw.Length + (comment?.Length ?? 0) > max)
        {
            throw new ArgumentException(
                $"The edited input ({raw.Length} characters) and the comment ({comment?.Length ?? 0}) are longer together than " +
                $"AgentPgOptions.MaxToolOutputLength ({max}): Claude reads both in the note that starts the call's tool_result, with every later " +
                $"request of the session. Shorten them (or pass null to run the tool with Claude's input); tool execution {toolExecutionId} still " +
                "waits for a decision.",
                nameof(input));
        }

        var (state, toolName, isAgentTool, storedSchema, isMemoryTool) = await _sql.Approvals.ForDecisionAsync(_dataSource, transaction, toolExecutionId, cancellationToken)
                .ConfigureAwait(false) ?? throw ToolExecutionNotFound(toolExecutionId, operation);
        if (state != "awaiting_approval")
        {
            throw await ApprovalNotPendingAsync(transaction, toolExecutionId, operation, cancellationToken).ConfigureAwait(false);
        }

        if (isMemoryTool)
        {
            // Claude's memory tool has no schema: the edit is checked as a command (an instance tool named memory is another tool).
            if (Memory.MemoryCommands.FormProblem(input) is { } wrong)
            {
                throw new ArgumentException(
                    $"The edited input was refused and tool execution {toolExecutionId} still waits for a decision. {wrong}", nameof(input));
            }

            return raw;
        }

        ToolSchema? schema = isAgentTool
            ? Tools.DelegateTool.Schema
            : _tools.TryGetValue(toolName, out var tool) ? tool.InputSchema
            : storedSchema is not null ? ToolSchema.FromJsonSchema(ToolExecutionSql.ParseJson(storedSchema))
            : null;
        if (schema is not null && ToolInputValidator.Validate(toolName, schema, input) is { } problem)
        {
            throw new ArgumentException(
                $"The edited input was refused and tool execution {toolExecutionId} still waits for a decision. {problem.Replace(
                    "Call the tool again with input that matches its schema.", "Pass an input that matches the tool's schema.", StringComparison.Ordinal)}",
                nameof(input));
        }

        return raw;
    }

    private static AgentPgException ToolExecutionNotFound(Guid id, string operation, string suffix = "", Exception? innerException = null)
        => new(AgentPgErrorCode.ToolExecutionNotFound, operation,
            $"No tool execution has id {id} (a deleted session takes its requests with it). GetPendingApprovalsAsync lists the ids that wait for a decision.{suffix}",
            innerException)
        {
            Context = new Dictionary<string, object?> { ["tool_execution_id"] = id },
        };

    // Our own decision statement is retried this many times when a snapshot isolation level refuses it for a change that was
    // not a decision (the request still waits).
    private const int MaxDecisionAttempts = 3;

    // After a serialization failure: ApprovalNotPending (or ToolExecutionNotFound) keeping it as the inner exception when the
    // request, read with a fresh snapshot, no longer waits; null when it still does.
    private async Task<AgentPgException?> ConflictingDecisionAsync(bool callersTransaction, Guid id, string operation, PostgresException conflict,
        CancellationToken cancellationToken)
    {
        var row = await _sql.Approvals.DecidedAsync(_dataSource, null, id, cancellationToken).ConfigureAwait(false);
        if (row?.State == "awaiting_approval")
        {
            return null;
        }

        var rollBack = callersTransaction
            ? " PostgreSQL aborted your transaction (a serialization failure: it read the request before that happened): roll it back."
            : "";
        return row is null
            ? ToolExecutionNotFound(id, operation, rollBack, conflict)
            : NotPending(row, id, operation, rollBack, conflict);
    }

    // Says why, from the execution's row: a call that never needed approval (a wrong id) is not "already decided".
    private async Task<AgentPgException> ApprovalNotPendingAsync(NpgsqlTransaction? transaction, Guid id, string operation,
        CancellationToken cancellationToken)
    {
        var row = await _sql.Approvals.DecidedAsync(_dataSource, transaction, id, cancellationToken).ConfigureAwait(false);
        return row is null
            // Deleted (with its session) since the decision looked.
            ? ToolExecutionNotFound(id, operation)
            : NotPending(row, id, operation, "", null);
    }

    private static AgentPgException NotPending(ApprovalState row, Guid id, string operation, string suffix, Exception? innerException)
    {
        var state = DbEnums.ParseToolExecutionState(row.State);
        var by = row.DecidedBy is { } who ? $" by {who}" : "";
        var at = row.DecidedAt is { } when ? " at " + when.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture) : "";
        var why = row switch
        {
            { Required: false } => $"it never waited for one: its agent did not list '{row.ToolName}' in ToolsRequiringApproval when Claude called it, so it " +
                $"runs without a decision (it is {state}). Only the requests GetPendingApprovalsAsync lists can be decided.",
            { Decision: "approved" } => $"it was already approved{by}{at} (it is {state} now). GetRunToolCallsAsync shows the decision.",
            { Decision: "rejected", DecidedBy: null, Comment: "approval timed out" } =>
                $"it timed out{at} (AgentPgOptions.ApprovalTimeout) and was rejected. GetRunToolCallsAsync shows the decision.",
            { Decision: "rejected" } => $"it was already rejected{by}{at}. GetRunToolCallsAsync shows the decision.",
            _ => $"its run was cancelled before anyone decided (it is {state}).",
        };
        return new AgentPgException(AgentPgErrorCode.ApprovalNotPending, operation, $"Tool execution {id} is not waiting for approval: {why}{suffix}",
            innerException)
        {
            Context = new Dictionary<string, object?> { ["tool_execution_id"] = id, ["state"] = state },
        };
    }
}
