using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Memory;
using AgentPg.Storage;
using AgentPg.Tools;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>What happens after an iteration's result is recorded.</summary>
internal enum IterationOutcome
{
    /// <summary>The run completed, waits for tools, or was re-queued: this holder is done with it.</summary>
    Done,

    /// <summary>Another iteration follows at once (pause_turn, truncated tool call) and the holder keeps the claim.</summary>
    ContinueInPlace,
}

/// <summary>Records an iteration's result in one fenced step, the same way for streamed and batch answers.</summary>
/// <remarks>
/// Each step starts with the fence (agentpg_fence_run): if the claim was taken away (cancelled, rescued) the whole step
/// rolls back and the caller drops the run. Steps are idempotent under retry: client-generated ids with ON CONFLICT DO
/// NOTHING, and a state change that makes a repeated fence fail.
/// </remarks>
internal sealed class IterationRecorder(Engine engine)
{
    // continueInPlace: streaming continuations run at once on this instance; batch ones re-queue the run (its next
    // iteration is another batch).
    public async Task<IterationOutcome> RecordAsync(ClaimedRun claimed, IterationContext context, ModelResponse response, bool continueInPlace,
        CancellationToken cancellationToken)
    {
        // U+0000 cannot be stored: Claude's text and tool inputs, streamed or from a batch, keep U+FFFD in its place (see Nul).
        foreach (var block in response.Blocks)
        {
            Nul.ReplaceIn(block);
        }

        response.StopSequence = Nul.Replace(response.StopSequence);

        // A tool call cut off by max_tokens is never executed: the iteration is repeated with more room.
        if (response.StopReason == StopReasons.MaxTokens && response.TruncatedToolUses.Count > 0)
        {
            var limit = RequestBuilder.ModelMaxOutputTokens(context.Agent.Model);
            if (context.MaxTokens >= limit)
            {
                throw new RunFailureException(ErrorTypes.MaxTokensExceeded,
                    $"Claude's tool call was cut off at max_tokens {context.MaxTokens}, the most model {context.Agent.Model} allows. " +
                    "Ask for smaller tool inputs.");
            }

            EnsureContinuationAllowed(claimed, "a truncated tool call");
            var next = Math.Min(context.MaxTokens * 2, limit);
            await ContinueAsync(claimed, context, response, storeMessage: false, ErrorTypes.TruncatedToolUse,
                $"tool_use cut off at max_tokens {context.MaxTokens}; repeating with max_tokens {next}", continueInPlace, cancellationToken).ConfigureAwait(false);
            claimed.MaxTokensOverride = next;
            return continueInPlace ? IterationOutcome.ContinueInPlace : IterationOutcome.Done;
        }

        // Not cut off, yet not JSON: fine-grained tool streaming (ITool.EagerInputStreaming) sends a tool's input unvalidated.
        // The tool_use stays in the turn with Claude's text and is answered with an error (below), so the conversation stays valid.
        response.KeepInvalidToolInputs();

        if (response.StopReason == StopReasons.PauseTurn)
        {
            EnsureContinuationAllowed(claimed, StopReasons.PauseTurn);
            await ContinueAsync(claimed, context, response, storeMessage: true, null, null, continueInPlace, cancellationToken).ConfigureAwait(false);
            claimed.MaxTokensOverride = null;
            return continueInPlace ? IterationOutcome.ContinueInPlace : IterationOutcome.Done;
        }

        if (response.StopReason == StopReasons.ModelContextWindowExceeded)
        {
            throw ContextWindowPolicy.Exceeded(context, "generation reached the model's context window", claimed.UsedExtendedContext, claimed.CompactedForContextWindow);
        }

        var toolUses = response.CompleteToolUses().ToList();
        if (toolUses.Count > 0)
        {
            CheckToolUseIds(toolUses);
            await CreateToolExecutionsAsync(claimed, context, response, toolUses, cancellationToken).ConfigureAwait(false);
            return IterationOutcome.Done;
        }

        await CompleteAsync(claimed, context, response, cancellationToken).ConfigureAwait(false);
        return IterationOutcome.Done;
    }

    // Every tool_result of the next request answers one tool_use by its id, and the Messages API gives each tool_use a unique
    // one: an answer with a missing or repeated id can be neither recorded (agentpg_tool_executions is unique per iteration
    // and id) nor continued, so the run fails saying so instead of with the constraint's SQLSTATE.
    private static void CheckToolUseIds(List<(int Index, JsonObject Block)> toolUses)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (index, block) in toolUses)
        {
            var id = block["id"] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
            if (string.IsNullOrEmpty(id) || !seen.Add(id))
            {
                throw new RunFailureException(ErrorTypes.ModelError,
                    $"Claude's answer cannot be continued: its tool_use block {index} ('{(string?)block["name"]}') has " +
                    (string.IsNullOrEmpty(id) ? "no id" : $"the id '{id}' of an earlier tool_use block") +
                    ", and every tool_result must answer one tool_use by a unique id. Regenerate the run (RegenerateRunAsync) to ask again.");
            }
        }
    }

    private void EnsureContinuationAllowed(ClaimedRun claimed, string reason)
    {
        if (claimed.Continuations >= engine.Options.MaxContinuations)
        {
            throw new RunFailureException(ErrorTypes.ContinuationLimit,
                $"The run needed another continuation iteration ({reason}) but already made {claimed.Continuations}, the maximum " +
                $"(AgentPgOptions.MaxContinuations = {engine.Options.MaxContinuations}).");
        }
    }

    private async Task CompleteAsync(ClaimedRun claimed, IterationContext context, ModelResponse response, CancellationToken token)
    {
        var run = claimed.Run;
        var messageId = Guid.CreateVersion7();
        var usage = claimed.IterationUsage;
        var nextRunMode = await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                NotifySql.AddDeferOnIndexPlans(batch, Notifications.Channels.RunFinalized);
                engine.Sql.Runs.AddLockParent(batch, run);
                engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, context.IterationId);
                AddAssistantMessage(batch, run, messageId, response, once: true);
                AddIterationCompletion(batch, claimed, context, response.StopReason, messageId, 0, null, null);
                engine.Sql.Runs.AddComplete(batch, run.Id, response.Text, response.StopReason ?? StopReasons.EndTurn, usage);
                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    return await RunSql.ReadNextRunModeAsync(reader, ct).ConfigureAwait(false);
                }
            }
        }, engine.Time, token).ConfigureAwait(false);
        engine.Notifier.RunFinalized(run, RunState.Completed, nextRunMode);
        Log.RunCompleted(engine.Logger, run.Id, claimed.Iteration, response.StopReason ?? StopReasons.EndTurn);
        Telemetry.RunFinished(run, "completed", claimed.Activity);
        AgentToolHook.Fire(engine, run);
    }

    private async Task ContinueAsync(ClaimedRun claimed, IterationContext context, ModelResponse response, bool storeMessage, string? errorType,
        string? errorMessage, bool continueInPlace, CancellationToken token)
    {
        var run = claimed.Run;
        var messageId = Guid.CreateVersion7();
        var usage = claimed.IterationUsage;
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, context.IterationId);
                if (storeMessage)
                {
                    AddAssistantMessage(batch, run, messageId, response, once: false);
                }

                AddIterationCompletion(batch, claimed, context, response.StopReason, storeMessage ? messageId : null, 0, errorType, errorMessage);
                engine.Sql.Runs.AddContinue(batch, run.Id, usage, inPlace: continueInPlace);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, token).ConfigureAwait(false);
        claimed.Continuations++;
        claimed.Trigger = TriggerTypes.Continuation;
    }

    private async Task CreateToolExecutionsAsync(ClaimedRun claimed, IterationContext context, ModelResponse response,
        List<(int Index, JsonObject Block)> toolUses, CancellationToken token)
    {
        var run = claimed.Run;
        var messageId = Guid.CreateVersion7();
        var usage = claimed.IterationUsage;
        var parameters = new JsonArray();
        var failedEarly = new List<ToolCallEvent>();
        var awaiting = 0;
        var approvalList = context.Agent.ToolsRequiringApproval;
        var position = 0;
        foreach (var (index, block) in toolUses)
        {
            var name = (string?)block["name"] ?? "";
            var input = block["input"] ?? new JsonObject();
            var inputElement = JsonSerializer.SerializeToElement(input);
            var p = new JsonObject
            {
                ["id"] = Guid.CreateVersion7().ToString(),
                ["iteration_id"] = context.IterationId.ToString(),
                ["tool_use_id"] = (string?)block["id"],
                ["tool_name"] = name,
                ["tool_input"] = input.DeepClone(),
                ["max_attempts"] = engine.Options.ToolRetry.MaxAttempts,
                ["position"] = position++,
            };

            // Unknown tools and invalid inputs fail here, before any worker claims them: no attempt is consumed.
            // An input that is not JSON (fine-grained tool streaming) fails whatever the tool: it cannot be validated or run.
            var notJson = response.InvalidToolInputs.Contains(index)
                ? $"The input of tool '{name}' is not valid JSON, so the tool was not called. Call it again with its whole input as one JSON object."
                : null;
            string? error;
            if (context.Delegates.TryGetValue(name, out var delegateId))
            {
                p["is_agent_tool"] = true;
                p["agent_id"] = delegateId.ToString();
                p["max_attempts"] = 1;
                error = notJson ?? ToolInputValidator.Validate(name, DelegateTool.Schema, inputElement);
            }
            else if (name == MemoryTool.ToolName && context.Agent.Memory is not null)
            {
                // Claude's memory tool: AgentPg runs it (any instance); its commands check their own input.
                p["is_memory_tool"] = true;
                error = notJson;
            }
            else if (context.Tools.TryGetValue(name, out var tool))
            {
                error = notJson ?? ToolInputValidator.Validate(name, tool.InputSchema, inputElement);
            }
            else
            {
                error = $"tool not found: {name}";
            }

            if (error is null && approvalList is { Count: > 0 } && (approvalList.Contains("*") || approvalList.Contains(name)))
            {
                // Waits for a person; no worker claims it until the decision (agentpg_decide_tool_approval).
                p["state"] = "awaiting_approval";
                awaiting++;
            }
            else if (error is not null)
            {
                p["state"] = "failed";
                p["error_message"] = error;
                failedEarly.Add(new ToolCallEvent
                {
                    RunId = run.Id,
                    SessionId = run.SessionId,
                    ToolName = name,
                    ToolInput = inputElement,
                    IsAgentTool = p["is_agent_tool"] is not null,
                    IterationNumber = context.IterationNumber,
                    IsError = true,
                    ErrorMessage = error,
                });
            }

            parameters.Add(p);
        }

        // Taken before the commit: when every tool use failed here, the run goes on at once and may finish before they fire.
        var onComplete = failedEarly.Count > 0 ? engine.Callbacks.OnComplete(run.Id) : null;
        var updates = new JsonObject
        {
            ["tool_iterations"] = 1,
            ["iteration_count"] = 1,
            ["input_tokens"] = usage.InputTokens,
            ["output_tokens"] = usage.OutputTokens,
            ["cache_creation_input_tokens"] = usage.CacheCreationInputTokens,
            ["cache_read_input_tokens"] = usage.CacheReadInputTokens,
            ["response_text"] = response.Text,
            ["stop_reason"] = response.StopReason,
        };

        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                NotifySql.AddDefer(batch, Notifications.Channels.ToolPending);
                engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, context.IterationId);
                AddAssistantMessage(batch, run, messageId, response, once: true);
                AddIterationCompletion(batch, claimed, context, response.StopReason, messageId, toolUses.Count, null, null);
                engine.Sql.Runs.AddCreateToolExecutions(batch, run, engine.InstanceId, parameters.ToJsonString(), updates.ToJsonString());
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, token).ConfigureAwait(false);

        engine.ToolWake.Set();
        if (failedEarly.Count + awaiting < toolUses.Count)
        {
            engine.Notifier.ToolPending(run.Id);
        }

        if (awaiting > 0 && engine.Hooks.HasApprovalRequested)
        {
            _ = FireApprovalRequestedAsync(context.IterationId);
        }

        foreach (var e in failedEarly)
        {
            engine.Callbacks.FireComplete(e, onComplete);
            _ = engine.Hooks.ToolCallAsync(e, CancellationToken.None);
        }

        Log.RunWaitingForTools(engine.Logger, run.Id, claimed.Iteration, toolUses.Count);
    }

    /// <summary>Calls <see cref="AgentPgHooks.OnApprovalRequested"/> for the iteration's new requests, not awaited.</summary>
    private async Task FireApprovalRequestedAsync(Guid iterationId)
    {
        try
        {
            var command = engine.Sql.Approvals.OfIterationCommand(engine.DataSource, iterationId);
            List<ToolApprovalRequest> requests;
            await using (command.ConfigureAwait(false))
            {
                requests = await command.QueryListAsync(ApprovalSql.Read, CancellationToken.None).ConfigureAwait(false);
            }

            foreach (var request in requests)
            {
                await engine.Hooks.ApprovalRequestedAsync(request, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            Log.HookFailed(engine.Logger, ex, nameof(AgentPgHooks.OnApprovalRequested));
        }
    }

    // once: the step's fence fails once it committed (it ends the claim or moves the run on), so a retry never reaches the
    // insert: it need not be idempotent. A continuation in place keeps the claim and the iteration, so its retry passes the
    // fence and must find its message already there.
    private void AddAssistantMessage(NpgsqlBatch batch, Run run, Guid messageId, ModelResponse response, bool once)
        => engine.Sql.Messages.AddInsert(batch, messageId, run, MessageRole.Assistant, MessageSql.UsageJson(response.Usage),
            MessageContent.FromClaude(response.Blocks), once);

    private void AddIterationCompletion(NpgsqlBatch batch, ClaimedRun claimed, IterationContext context, string? stopReason, Guid? messageId,
        int toolCount, string? errorType, string? errorMessage)
        => engine.Sql.Iterations.AddComplete(batch, context.IterationId, stopReason, messageId, toolCount, claimed.IterationUsage, errorType, errorMessage,
            context.MaxTokens, claimed.UsedExtendedContext, context.Agent.Model);
}
