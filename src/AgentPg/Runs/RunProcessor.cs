using System.Net.Http;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Storage;
using AgentPg.Tools;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>Processes one claimed streaming run: iterations until the run completes, waits for tools, or fails.</summary>
/// <remarks>
/// Every database step is one batch (one round trip, one implicit transaction) that starts with the fence
/// (agentpg_fence_run): if the claim was taken away the whole step rolls back and the run is dropped.
/// No transaction is open while Claude answers.
/// </remarks>
internal sealed class RunProcessor(Engine engine)
{
    private const string ExtendedContextBeta = "context-1m-2025-08-07";

    private static readonly IReadOnlyDictionary<string, JsonElement> s_noHeaders = new Dictionary<string, JsonElement>();
    private static readonly IReadOnlyDictionary<string, JsonElement> s_extendedContextHeaders =
        new Dictionary<string, JsonElement> { ["anthropic-beta"] = JsonSerializer.SerializeToElement(ExtendedContextBeta) };

    public async Task ProcessAsync(Run run, CancellationToken hardStop)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(hardStop);
        using var registration = engine.InFlight.Register(run.Id, cts);
        var token = cts.Token;
        var state = new State(run);
        try
        {
            while (true)
            {
                var context = await StartIterationAsync(state, token).ConfigureAwait(false);
                var outcome = await RunIterationAsync(state, context, token).ConfigureAwait(false);
                if (!outcome)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            Log.ClaimLost(engine.Logger, run.Id, run.ClaimEpoch);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Cancelled run (already final) or shutdown (the run is released by StopAsync).
            Log.RunProcessingCancelled(engine.Logger, run.Id);
        }
        catch (RunFailureException failure)
        {
            await FailAsync(state, failure.ErrorType, failure.Message).ConfigureAwait(false);
        }
        catch (Exception ex) when (!Transient.IsTransient(ex) && ex is not OperationCanceledException)
        {
            Log.RunProcessingFailed(engine.Logger, ex, run.Id);
            await FailAsync(state, "processing_error", $"Processing the run failed: {ex.Message}").ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The database stayed unreachable: leave the run claimed; rescue gives it to a live instance.
            Log.RunProcessingFailed(engine.Logger, ex, run.Id);
        }
    }

    /// <summary>One model call and its recorded result. Returns true when the run continues in place.</summary>
    private async Task<bool> RunIterationAsync(State state, IterationContext context, CancellationToken token)
    {
        var body = RequestBuilder.Body(context.Agent, context.MaxTokens, context.System, RequestBuilder.Messages(context.History), context.ToolsJson);
        var response = await CallWithRetriesAsync(state, context, body, token).ConfigureAwait(false);
        state.IterationUsage += response.Usage;

        // A tool call cut off by max_tokens is never executed: the iteration is repeated with more room.
        if (response.StopReason == "max_tokens" && response.TruncatedToolUses.Count > 0)
        {
            var limit = RequestBuilder.ModelMaxOutputTokens(context.Agent.Model);
            if (context.MaxTokens >= limit)
            {
                throw new RunFailureException("max_tokens_exceeded",
                    $"Claude's tool call was cut off at max_tokens {context.MaxTokens}, the most model {context.Agent.Model} allows. " +
                    "Ask for smaller tool inputs.");
            }

            EnsureContinuationAllowed(state, "a truncated tool call");
            var next = Math.Min(context.MaxTokens * 2, limit);
            await ContinueAsync(state, context, response, storeMessage: false, "truncated_tool_use",
                $"tool_use cut off at max_tokens {context.MaxTokens}; repeating with max_tokens {next}", token).ConfigureAwait(false);
            state.MaxTokensOverride = next;
            return true;
        }

        if (response.StopReason == "pause_turn")
        {
            EnsureContinuationAllowed(state, "pause_turn");
            await ContinueAsync(state, context, response, storeMessage: true, null, null, token).ConfigureAwait(false);
            return true;
        }

        if (response.StopReason == "model_context_window_exceeded")
        {
            throw ContextWindowExceeded(context, "generation reached the model's context window", state.UsedExtendedContext);
        }

        var toolUses = response.CompleteToolUses().ToList();
        if (toolUses.Count > 0)
        {
            await CreateToolExecutionsAsync(state, context, response, toolUses, token).ConfigureAwait(false);
            return false;
        }

        await CompleteAsync(state, context, response, token).ConfigureAwait(false);
        return false;
    }

    private void EnsureContinuationAllowed(State state, string reason)
    {
        if (state.Continuations >= engine.Options.MaxContinuations)
        {
            throw new RunFailureException("continuation_limit",
                $"The run needed another continuation iteration ({reason}) but already made {state.Continuations}, the maximum " +
                $"(AgentPgOptions.MaxContinuations = {engine.Options.MaxContinuations}).");
        }
    }

    private async Task<IterationContext> StartIterationAsync(State state, CancellationToken token)
    {
        var run = state.Run;
        var number = state.Iteration + 1;
        var iterationId = Guid.CreateVersion7();
        var writePrompt = state.Iteration == 0 && !string.IsNullOrEmpty(run.Prompt);
        var promptId = Guid.CreateVersion7();
        var trigger = state.Trigger;

        // Agent changes apply from the next iteration: it is read in the same step.
        return await Transient.RetryAsync(async ct =>
        {
            var sql = engine.Sql;
            var batch = engine.DataSource.CreateBatch();
            await using (batch.ConfigureAwait(false))
            {
                Add(batch, sql.Runs.Fence, P.Uuid(run.Id), P.Text(engine.InstanceId), P.Long(run.ClaimEpoch));
                if (writePrompt)
                {
                    Add(batch, sql.Messages.Insert, P.Uuid(promptId), P.Uuid(run.SessionId), P.Uuid(run.Id), P.Text("user"), P.Jsonb("{}"));
                    Add(batch, sql.Messages.InsertTextBlock, P.Uuid(promptId), P.Text(run.Prompt));
                }

                // max_tokens is only known with the agent; the iteration row gets it in the completion step.
                Add(batch, sql.Iterations.Insert, P.Uuid(iterationId), P.Uuid(run.Id), P.Int(number), P.Bool(true), P.Text(trigger),
                    P.Int((int?)null), P.Text(engine.InstanceId), P.Long(run.ClaimEpoch));
                Add(batch, sql.Runs.StartIteration, P.Uuid(run.Id), P.Int(number), P.Uuid(iterationId));
                Add(batch, sql.Agents.GetById, P.Uuid(run.AgentId));
                Add(batch, sql.Agents.GetDelegates, P.Uuid(run.AgentId));
                Add(batch, run.Depth == 0 ? sql.Messages.RootContext : sql.Messages.RunContext, P.Uuid(run.Depth == 0 ? run.SessionId : run.Id));

                var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    await reader.NextResultAsync(ct).ConfigureAwait(false); // past the fence
                    var agent = await reader.ReadAsync(ct).ConfigureAwait(false)
                        ? AgentSql.Read(reader)
                        : throw new RunFailureException("processing_error", $"Agent {run.AgentId} of the run no longer exists.");
                    await reader.NextResultAsync(ct).ConfigureAwait(false);
                    var delegates = new List<(Guid Id, string Name, string? Description)>();
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        delegates.Add((reader.GetGuid(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2)));
                    }

                    await reader.NextResultAsync(ct).ConfigureAwait(false);
                    var history = await MessageSql.ReadMessagesAsync(reader, ct).ConfigureAwait(false);
                    state.Iteration = number;
                    state.IterationId = iterationId;
                    state.IterationUsage = Usage.Zero;
                    return BuildContext(state, agent, delegates, history, number, iterationId);
                }
            }
        }, engine.Time, token).ConfigureAwait(false);
    }

    private IterationContext BuildContext(State state, AgentDefinition agent, List<(Guid Id, string Name, string? Description)> delegates,
        List<Message> history, int number, Guid iterationId)
    {
        var offered = new SortedDictionary<string, ITool>(StringComparer.Ordinal);
        if (agent.Tools is null)
        {
            foreach (var (name, tool) in engine.Tools)
            {
                offered[name] = tool;
            }
        }
        else
        {
            foreach (var name in agent.Tools)
            {
                if (engine.Tools.TryGetValue(name, out var tool))
                {
                    offered[name] = tool;
                }
            }
        }

        var delegateTools = new Dictionary<string, Guid>(StringComparer.Ordinal);
        foreach (var d in delegates)
        {
            if (ToolNames.IsValid(d.Name) && !delegateTools.ContainsKey(d.Name))
            {
                // A delegate wins over an instance tool of the same name (only possible with Tools = null).
                offered.Remove(d.Name);
                delegateTools[d.Name] = d.Id;
            }
        }

        var toolsJson = new JsonArray();
        foreach (var tool in offered.Values)
        {
            toolsJson.Add(RequestBuilder.ToolDefinition(tool.Name, tool.Description, tool.InputSchema.ToJsonObject()));
        }

        foreach (var d in delegates.Where(d => delegateTools.TryGetValue(d.Name, out var id) && id == d.Id))
        {
            toolsJson.Add(RequestBuilder.ToolDefinition(d.Name, d.Description ?? "", (JsonObject)RequestBuilder.DelegateInputSchema.DeepClone()));
        }

        var maxTokens = state.MaxTokensOverride ?? agent.MaxTokens ?? RequestBuilder.DefaultMaxTokens;
        return new IterationContext(agent, history, offered, delegateTools, toolsJson, maxTokens,
            RequestBuilder.SystemPrompt(agent, state.Run.OverrideInstructions, state.Run.AppendInstructions), number, iterationId,
            UseExtendedContext(agent));
    }

    private bool UseExtendedContext(AgentDefinition agent)
        => engine.Options.ExtendedContext || agent.Config.TryGetValue("extended_context", out var value) && value is true;

    private async Task<ModelResponse> CallWithRetriesAsync(State state, IterationContext context, Dictionary<string, JsonElement> body, CancellationToken token)
    {
        var failures = 0;
        while (true)
        {
            try
            {
                return await CallOnceAsync(state, body, token).ConfigureAwait(false);
            }
            catch (AnthropicBadRequestException ex) when (IsPromptTooLong(ex))
            {
                if (context.ExtendedContextAllowed && !state.UsedExtendedContext)
                {
                    state.UsedExtendedContext = true;
                    Log.ExtendedContextRetry(engine.Logger, state.Run.Id);
                    continue;
                }

                throw ContextWindowExceeded(context, ex.ApiMessage ?? ex.Message, state.UsedExtendedContext);
            }
            catch (AnthropicApiException ex)
            {
                // The SDK already retried what is retryable (408, 409, 429, 5xx) before throwing.
                throw new RunFailureException("model_error",
                    $"Claude API error {(int)ex.StatusCode} {ex.Type?.Raw() ?? "error"}: {ex.ApiMessage ?? "(no message)"}");
            }
            catch (Exception ex) when (IsStreamFailure(ex) && !token.IsCancellationRequested)
            {
                failures++;
                if (failures > engine.Options.MaxModelRetries)
                {
                    throw new RunFailureException("model_error",
                        $"Claude's streamed answer failed {failures} times (AgentPgOptions.MaxModelRetries = {engine.Options.MaxModelRetries}); " +
                        $"last error: {Describe(ex)}");
                }

                Log.ModelRetry(engine.Logger, state.Run.Id, failures, Describe(ex));
                await Task.Delay(TimeSpan.FromMilliseconds(250 * failures), engine.Time, token).ConfigureAwait(false);
            }
        }
    }

    private async Task<ModelResponse> CallOnceAsync(State state, Dictionary<string, JsonElement> body, CancellationToken token)
    {
        var claude = engine.Claude ?? throw new InvalidOperationException("The client is not started.");
        var parameters = MessageCreateParams.FromRawUnchecked(state.UsedExtendedContext ? s_extendedContextHeaders : s_noHeaders, s_noHeaders, body);
        var progress = new ProgressReporter(engine, state.Run, token);
        var aggregator = new StreamAggregator { OnText = _ => progress.Report() };
        var events = claude.Messages.CreateStreaming(parameters, token);
        await foreach (var ev in events.WithCancellation(token).ConfigureAwait(false))
        {
            aggregator.Add(ev.Json);
        }

        if (!aggregator.Response.Completed)
        {
            throw new IOException("Claude's stream ended before message_stop.");
        }

        return aggregator.Response;
    }

    private static bool IsPromptTooLong(AnthropicBadRequestException ex)
        => ex.ApiMessage is { } message
           && (message.StartsWith("prompt is too long", StringComparison.Ordinal) || message.Contains("exceed context limit", StringComparison.Ordinal));

    private static bool IsStreamFailure(Exception ex)
        => ex is AnthropicSseException or AnthropicIOException or AnthropicInvalidDataException or IOException or HttpRequestException
           || (ex is OperationCanceledException { InnerException: TimeoutException });

    private static string Describe(Exception ex)
    {
        if (ex is AnthropicSseException sse)
        {
            return $"{sse.Type?.Raw() ?? "error"}: {sse.ApiMessage}";
        }

        // Transport errors wrap the useful part ("Connection refused (api.anthropic.com:443)").
        var parts = new List<string>();
        for (var e = ex; e is not null && parts.Count < 4; e = e.InnerException)
        {
            if (!string.IsNullOrWhiteSpace(e.Message) && !parts.Contains(e.Message))
            {
                parts.Add(e.Message);
            }
        }

        return string.Join(" ← ", parts);
    }

    private static RunFailureException ContextWindowExceeded(IterationContext context, string detail, bool triedExtended)
        => new("context_window_exceeded",
            triedExtended
                ? $"The conversation does not fit Claude's context window even with the 1M-token window ({detail}). Start a new session."
                : $"The conversation no longer fits Claude's context window ({detail}). Enable AgentPgOptions.ExtendedContext " +
                  $"(or Config[\"extended_context\"] = true on agent '{context.Agent.Name}') to retry with the 1M-token window, or start a new session.");

    private async Task CompleteAsync(State state, IterationContext context, ModelResponse response, CancellationToken token)
    {
        var run = state.Run;
        var messageId = Guid.CreateVersion7();
        var usage = state.IterationUsage;
        await Transient.RetryAsync(async ct =>
        {
            var batch = engine.DataSource.CreateBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch, run);
                AddAssistantMessage(batch, run, messageId, response);
                AddIterationCompletion(batch, state, context, response.StopReason, messageId, 0, null, null);
                Add(batch, engine.Sql.Runs.Complete, P.Uuid(run.Id), P.Text(response.Text), P.Text(response.StopReason ?? "end_turn"),
                    P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens), P.Int((int)usage.CacheReadInputTokens));
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
        }, engine.Time, token).ConfigureAwait(false);
        Log.RunCompleted(engine.Logger, run.Id, state.Iteration, response.StopReason ?? "end_turn");
    }

    private async Task ContinueAsync(State state, IterationContext context, ModelResponse response, bool storeMessage, string? errorType, string? errorMessage, CancellationToken token)
    {
        var run = state.Run;
        var messageId = Guid.CreateVersion7();
        var usage = state.IterationUsage;
        await Transient.RetryAsync(async ct =>
        {
            var batch = engine.DataSource.CreateBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch, run);
                if (storeMessage)
                {
                    AddAssistantMessage(batch, run, messageId, response);
                }

                AddIterationCompletion(batch, state, context, response.StopReason, storeMessage ? messageId : null, 0, errorType, errorMessage);
                Add(batch, engine.Sql.Runs.Continue, P.Uuid(run.Id), P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens),
                    P.Int((int)usage.CacheCreationInputTokens), P.Int((int)usage.CacheReadInputTokens), P.Int(1));
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
        }, engine.Time, token).ConfigureAwait(false);
        state.Continuations++;
        state.Trigger = "continuation";
    }

    private async Task CreateToolExecutionsAsync(State state, IterationContext context, ModelResponse response,
        List<(int Index, JsonObject Block)> toolUses, CancellationToken token)
    {
        var run = state.Run;
        var messageId = Guid.CreateVersion7();
        var usage = state.IterationUsage;
        var parameters = new JsonArray();
        var failedEarly = new List<ToolCallEvent>();
        var position = 0;
        foreach (var (_, block) in toolUses)
        {
            var name = (string?)block["name"] ?? "";
            var input = block["input"] ?? new JsonObject();
            var inputElement = JsonSerializer.SerializeToElement(input);
            var p = new JsonObject
            {
                ["iteration_id"] = context.IterationId.ToString(),
                ["tool_use_id"] = (string?)block["id"],
                ["tool_name"] = name,
                ["tool_input"] = input.DeepClone(),
                ["max_attempts"] = engine.Options.ToolRetry.MaxAttempts,
                ["position"] = position++,
            };
            string? error;
            if (context.Delegates.TryGetValue(name, out var delegateId))
            {
                p["is_agent_tool"] = true;
                p["agent_id"] = delegateId.ToString();
                p["max_attempts"] = 1;
                error = ToolInputValidator.Validate(name, AgentToolSchema, inputElement);
            }
            else if (context.Tools.TryGetValue(name, out var tool))
            {
                error = ToolInputValidator.Validate(name, tool.InputSchema, inputElement);
            }
            else
            {
                error = $"tool not found: {name}";
            }

            if (error is not null)
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
            var batch = engine.DataSource.CreateBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch, run);
                AddAssistantMessage(batch, run, messageId, response);
                AddIterationCompletion(batch, state, context, response.StopReason, messageId, toolUses.Count, null, null);
                Add(batch, engine.Sql.Runs.CreateToolExecutions, P.Jsonb(parameters.ToJsonString()), P.Uuid(run.Id), P.Jsonb(updates.ToJsonString()),
                    P.Text(engine.InstanceId), P.Long(run.ClaimEpoch));
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
        }, engine.Time, token).ConfigureAwait(false);

        engine.ToolWake.Set();
        foreach (var e in failedEarly)
        {
            engine.Callbacks.FireComplete(e);
        }

        Log.RunWaitingForTools(engine.Logger, run.Id, state.Iteration, toolUses.Count);
    }

    private async Task FailAsync(State state, string errorType, string message)
    {
        var run = state.Run;
        var usage = state.IterationUsage;
        try
        {
            await Transient.RetryAsync(async ct =>
            {
                var batch = engine.DataSource.CreateBatch();
                await using (batch.ConfigureAwait(false))
                {
                    AddFence(batch, run);
                    if (state.IterationId is { } iterationId)
                    {
                        Add(batch, engine.Sql.Iterations.Complete, P.Uuid(iterationId), P.Text((string?)null), P.Uuid((Guid?)null), P.Int(0),
                            P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens),
                            P.Int((int)usage.CacheReadInputTokens), P.Text(errorType), P.Text(message), P.Int((int?)null));
                    }

                    Add(batch, engine.Sql.Runs.Fail, P.Uuid(run.Id), P.Text(errorType), P.Text(message), P.Int((int)usage.InputTokens),
                        P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens), P.Int((int)usage.CacheReadInputTokens));
                    await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }
            }, engine.Time, CancellationToken.None).ConfigureAwait(false);
            Log.RunFailed(engine.Logger, run.Id, errorType, message);
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            Log.ClaimLost(engine.Logger, run.Id, run.ClaimEpoch);
        }
        catch (NpgsqlException ex)
        {
            Log.RunProcessingFailed(engine.Logger, ex, run.Id);
        }
    }

    private void AddFence(NpgsqlBatch batch, Run run)
        => Add(batch, engine.Sql.Runs.Fence, P.Uuid(run.Id), P.Text(engine.InstanceId), P.Long(run.ClaimEpoch));

    private void AddAssistantMessage(NpgsqlBatch batch, Run run, Guid messageId, ModelResponse response)
    {
        Add(batch, engine.Sql.Messages.Insert, P.Uuid(messageId), P.Uuid(run.SessionId), P.Uuid(run.Id), P.Text("assistant"),
            P.Jsonb(MessageSql.UsageJson(response.Usage)));
        var blocks = response.Blocks.Select(BlockMapping.ToStored).ToList();
        if (blocks.Count > 0)
        {
            var insert = new NpgsqlBatchCommand(engine.Sql.Messages.InsertBlocks);
            MessageSql.AddBlockArrays(insert.Parameters, messageId, blocks);
            batch.BatchCommands.Add(insert);
        }
    }

    private void AddIterationCompletion(NpgsqlBatch batch, State state, IterationContext context, string? stopReason, Guid? messageId,
        int toolCount, string? errorType, string? errorMessage)
    {
        var usage = state.IterationUsage;
        Add(batch, engine.Sql.Iterations.Complete, P.Uuid(context.IterationId), P.Text(stopReason), P.Uuid(messageId), P.Int(toolCount),
            P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens),
            P.Int((int)usage.CacheReadInputTokens), P.Text(errorType), P.Text(errorMessage), P.Int(context.MaxTokens));
    }

    private static void Add(NpgsqlBatch batch, string sql, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.AddRange(parameters);
        batch.BatchCommands.Add(command);
    }

    internal static readonly ToolSchema AgentToolSchema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["task"] = new() { Type = "string", MinLength = 1, Description = "The task to delegate to this agent" },
        },
        Required = ["task"],
    };

    /// <summary>Mutable processing state of the claimed run on this instance.</summary>
    private sealed class State(Run run)
    {
        public Run Run { get; } = run;

        public int Iteration { get; set; } = run.CurrentIteration;

        public Guid? IterationId { get; set; }

        public int Continuations { get; set; } = run.ContinuationCount;

        public string Trigger { get; set; } = run.CurrentIteration == 0 ? "user_prompt" : "tool_results";

        public int? MaxTokensOverride { get; set; }

        public bool UsedExtendedContext { get; set; }

        /// <summary>Usage of the current iteration's model calls (retries included: they are paid for).</summary>
        public Usage IterationUsage { get; set; } = Usage.Zero;
    }

    private sealed record IterationContext(
        AgentDefinition Agent,
        List<Message> History,
        SortedDictionary<string, ITool> Tools,
        Dictionary<string, Guid> Delegates,
        JsonArray ToolsJson,
        int MaxTokens,
        string? System,
        int IterationNumber,
        Guid IterationId,
        bool ExtendedContextAllowed);

    /// <summary>Records that a stream is alive, at most every few seconds, so RescueTimeout does not fire on long answers.</summary>
    private sealed class ProgressReporter(Engine engine, Run run, CancellationToken token)
    {
        private long _last = engine.Time.GetTimestamp();

        public void Report()
        {
            var interval = TimeSpan.FromTicks(Math.Min(engine.Options.RunRescue.Timeout.Ticks / 4, TimeSpan.FromSeconds(10).Ticks));
            var now = engine.Time.GetTimestamp();
            var last = Interlocked.Read(ref _last);
            if (engine.Time.GetElapsedTime(last, now) < interval || Interlocked.CompareExchange(ref _last, now, last) != last)
            {
                return;
            }

            _ = WriteAsync();
        }

        private async Task WriteAsync()
        {
            try
            {
                var command = engine.DataSource.CreateCommand(engine.Sql.Runs.Progress);
                await using (command.ConfigureAwait(false))
                {
                    command.Parameters.Add(P.Uuid(run.Id));
                    command.Parameters.Add(P.Long(run.ClaimEpoch));
                    command.Parameters.Add(P.Text(engine.InstanceId));
                    await command.ExecuteNonQueryAsync(token).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException)
            {
                // Best effort: a missed progress mark only matters if the stream stalls for RescueTimeout.
            }
        }
    }
}
