using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;

namespace AgentPg.Diagnostics;

/// <summary>AgentPg's <see cref="ActivitySource"/> and <see cref="Meter"/>, both named <c>AgentPg</c> (DESIGN §13.9): spans and
/// metrics with the OpenTelemetry GenAI semantic conventions, through System.Diagnostics only.</summary>
internal static class Telemetry
{
    public const string Name = "AgentPg";
    public const string Provider = "anthropic";

    private static readonly string s_version =
        typeof(Telemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    public static readonly ActivitySource Source = new(Name, s_version);

    public static readonly Meter Meter = new(Name, s_version);

    public static readonly Histogram<long> TokenUsage = Meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}",
        "Tokens used by model calls (streamed and batch), by gen_ai.token.type (input includes cache reads and writes) and agentpg.run.mode.");

    public static readonly Histogram<double> OperationDuration = Meter.CreateHistogram<double>("gen_ai.client.operation.duration", "s",
        "Duration of model calls (chat), from request to the end of the answer.");

    public static readonly Counter<long> Runs = Meter.CreateCounter<long>("agentpg.runs", "{run}",
        "Runs that reached a final state, by agentpg.run.outcome (counted by the instance or client that made the transition).");

    public static readonly Histogram<double> QueueDuration = Meter.CreateHistogram<double>("agentpg.run.queue_duration", "s",
        "Time from a run's creation to its first claim.");

    public static readonly Counter<long> ToolExecutions = Meter.CreateCounter<long>("agentpg.tool.executions", "{execution}",
        "Tool execution attempts, by gen_ai.tool.name and agentpg.tool.outcome.");

    public static readonly Counter<long> ServerToolRequests = Meter.CreateCounter<long>("agentpg.server_tool.requests", "{request}",
        "Server tool uses Claude bills per use (usage.server_tool_use), by gen_ai.tool.name (web_search, web_fetch) and agentpg.run.mode.");

    private static readonly ConcurrentDictionary<PendingRunsProbe, byte> s_probes = new();

    static Telemetry()
    {
        Meter.CreateObservableGauge("agentpg.runs.pending", ObservePending, "{run}",
            "Runs waiting to be claimed, per schema, reported by the schema's leader only (refreshed at most every few seconds).");
    }

    public static void Register(PendingRunsProbe probe) => s_probes.TryAdd(probe, 0);

    public static void Unregister(PendingRunsProbe probe) => s_probes.TryRemove(probe, out _);

    private static IEnumerable<Measurement<long>> ObservePending()
    {
        foreach (var probe in s_probes.Keys)
        {
            if (probe.Observe() is { } value)
            {
                yield return new Measurement<long>(value, new KeyValuePair<string, object?>("agentpg.schema", probe.Schema),
                    new KeyValuePair<string, object?>("agentpg.instance.id", probe.InstanceId));
            }
        }
    }

    /// <summary>Starts a span continuing <paramref name="traceParent"/> (a W3C traceparent stored with the run) when it parses,
    /// else the ambient context.</summary>
    public static Activity? Start(string name, ActivityKind kind, string? traceParent)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        return traceParent is not null && ActivityContext.TryParse(traceParent, null, out var parent)
            ? Source.StartActivity(name, kind, parent)
            : Source.StartActivity(name, kind);
    }

    /// <summary>The current W3C trace context to store with a new run, if any.</summary>
    public static string? CurrentTraceParent()
        => Activity.Current is { IdFormat: ActivityIdFormat.W3C } current ? current.Id : null;

    public static Activity? StartInvokeAgent(global::AgentPg.Runs.ClaimedRun claimed)
    {
        var run = claimed.Run;
        // The run's first claim: the claim started its first iteration (or, for a claim that starts none, none was started yet).
        if (run.CurrentIteration == (claimed.IterationStarted ? 1 : 0) && run.ClaimedAt is { } claimedAt)
        {
            // created_at is the creating transaction's start and claimed_at the claim's clock_timestamp(), so the difference is
            // not negative unless the database's clock stepped back; such a run waited no time at all.
            QueueDuration.Record(Math.Max(0, (claimedAt - run.CreatedAt).TotalSeconds), new KeyValuePair<string, object?>("agentpg.run.mode", Mode(run)));
        }

        return StartInvokeAgentSpan(claimed);
    }

    /// <summary>Starts the invoke_agent span of a batch run's result being applied by the batch poller (recorded, resubmitted,
    /// or failing the run), continuing the run's stored trace context: without it a batch run's trace ended with the
    /// submission of its batch, and its outcome was in no span.</summary>
    /// <param name="claimed">The run, as the poller holds it.</param>
    /// <param name="batchId">The message batch whose result is applied.</param>
    /// <param name="result">Its result (<c>succeeded</c>, <c>errored</c>, <c>canceled</c>, <c>expired</c>, <c>missing</c>), when
    /// known before it is read.</param>
    public static Activity? StartBatchResult(global::AgentPg.Runs.ClaimedRun claimed, string batchId, string? result)
    {
        var activity = StartInvokeAgentSpan(claimed);
        if (activity is not null)
        {
            activity.SetTag("agentpg.batch.id", batchId);
            if (result is not null)
            {
                activity.SetTag("agentpg.batch.result", result);
            }
        }

        return activity;
    }

    /// <summary>Tags a batch result's span with the answer, as a chat span is tagged (its tokens were measured by
    /// <see cref="Answered"/>).</summary>
    public static void BatchAnswered(Activity? activity, Claude.ModelResponse response, bool captureContent)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetTag("gen_ai.response.model", response.Model);
        activity.SetTag("gen_ai.response.id", response.MessageId);
        activity.SetTag("gen_ai.response.finish_reasons", new[] { response.StopReason ?? "" });
        activity.SetTag("gen_ai.usage.input_tokens", response.Usage.InputTokens + response.Usage.CacheReadInputTokens + response.Usage.CacheCreationInputTokens);
        activity.SetTag("gen_ai.usage.output_tokens", response.Usage.OutputTokens);
        ServerToolTags(activity, response.Usage);
        if (captureContent)
        {
            activity.SetTag("gen_ai.output.messages", response.ToMessageJson().GetRawText());
        }
    }

    private static Activity? StartInvokeAgentSpan(global::AgentPg.Runs.ClaimedRun claimed)
    {
        var run = claimed.Run;
        var activity = Start("invoke_agent", ActivityKind.Internal, claimed.TraceParent);
        if (activity is not null)
        {
            activity.SetTag("gen_ai.operation.name", "invoke_agent");
            activity.SetTag("gen_ai.provider.name", Provider);
            activity.SetTag("gen_ai.agent.id", run.AgentId.ToString());
            activity.SetTag("gen_ai.conversation.id", run.SessionId.ToString());
            activity.SetTag("agentpg.run.id", run.Id.ToString());
            activity.SetTag("agentpg.run.mode", Mode(run));
            activity.SetTag("agentpg.run.depth", run.Depth);
        }

        return activity;
    }

    public static void AgentKnown(Activity? activity, AgentDefinition agent)
    {
        if (activity is null)
        {
            return;
        }

        activity.DisplayName = "invoke_agent " + agent.Name;
        activity.SetTag("gen_ai.agent.name", agent.Name);
        activity.SetTag("gen_ai.request.model", agent.Model);
    }

    /// <summary>Counts a run this instance finished, and tags the invoke_agent span that finished it with the outcome.</summary>
    public static void RunFinished(Run run, string outcome, Activity? invokeAgent)
    {
        Runs.Add(1, new KeyValuePair<string, object?>("agentpg.run.outcome", outcome), new KeyValuePair<string, object?>("agentpg.run.mode", Mode(run)));
        RunOutcome(invokeAgent, outcome);
    }

    /// <summary>Tags an invoke_agent span with the run's outcome (completed, failed, cancelled) when the run ended during it. A
    /// cancellation is not an error: the span's status stays unset, as the OpenTelemetry conventions have it.</summary>
    public static void RunOutcome(Activity? invokeAgent, string outcome) => invokeAgent?.SetTag("agentpg.run.outcome", outcome);

    /// <summary>Counts <paramref name="count"/> runs of mode <paramref name="mode"/> (as stored: streaming or batch) cancelled by this
    /// client: a cancelled run and its descendants, which share its mode.</summary>
    public static void RunsCancelled(string? mode, int count)
        => Runs.Add(count, new KeyValuePair<string, object?>("agentpg.run.outcome", "cancelled"),
            new KeyValuePair<string, object?>("agentpg.run.mode", mode == "batch" ? "batch" : "streaming"));

    /// <summary>Counts the runs the leader's rescue or stale-instance cleanup failed (rescued more than
    /// <see cref="RunRescueOptions.MaxAttempts"/> times), one mode (as stored: streaming or batch) per run.</summary>
    public static void RunsFailed(IReadOnlyList<string> modes)
    {
        foreach (var mode in modes)
        {
            Runs.Add(1, new KeyValuePair<string, object?>("agentpg.run.outcome", "failed"),
                new KeyValuePair<string, object?>("agentpg.run.mode", mode == "batch" ? "batch" : "streaming"));
        }
    }

    public static Activity? StartChat(global::AgentPg.Runs.ClaimedRun claimed, string model, Dictionary<string, System.Text.Json.JsonElement>? capturedBody)
    {
        var activity = Start("chat " + model, ActivityKind.Client, claimed.Activity is null ? claimed.TraceParent : null);
        if (activity is null)
        {
            return null;
        }

        activity.SetTag("gen_ai.operation.name", "chat");
        activity.SetTag("gen_ai.provider.name", Provider);
        activity.SetTag("gen_ai.request.model", model);
        activity.SetTag("gen_ai.conversation.id", claimed.Run.SessionId.ToString());
        activity.SetTag("agentpg.run.id", claimed.Run.Id.ToString());
        if (capturedBody is not null && capturedBody.TryGetValue("messages", out var messages))
        {
            activity.SetTag("gen_ai.input.messages", messages.GetRawText());
            if (capturedBody.TryGetValue("system", out var system))
            {
                activity.SetTag("gen_ai.system_instructions", system.GetRawText());
            }
        }

        return activity;
    }

    public static void ChatCompleted(Activity? activity, string model, Claude.ModelResponse response, TimeSpan duration, bool captureContent)
    {
        var input = response.Usage.InputTokens + response.Usage.CacheReadInputTokens + response.Usage.CacheCreationInputTokens;
        var output = response.Usage.OutputTokens;
        if (OperationDuration.Enabled || TokenUsage.Enabled)
        {
            // The tag arrays are only built when some listener takes the measurements (a run's model call without one
            // allocated three of them).
            KeyValuePair<string, object?>[] tags =
            [
                new("gen_ai.operation.name", "chat"), new("gen_ai.provider.name", Provider), new("gen_ai.request.model", model),
                new("gen_ai.response.model", response.Model ?? model),
            ];
            OperationDuration.Record(duration.TotalSeconds, tags);
            TokenUsage.Record(input, [.. tags, new("gen_ai.token.type", "input"), new("agentpg.run.mode", "streaming")]);
            TokenUsage.Record(output, [.. tags, new("gen_ai.token.type", "output"), new("agentpg.run.mode", "streaming")]);
        }

        ServerToolsUsed(model, response.Usage, "streaming");
        if (activity is null)
        {
            return;
        }

        activity.SetTag("gen_ai.response.model", response.Model);
        activity.SetTag("gen_ai.response.id", response.MessageId);
        activity.SetTag("gen_ai.response.finish_reasons", new[] { response.StopReason ?? "" });
        activity.SetTag("gen_ai.usage.input_tokens", input);
        activity.SetTag("gen_ai.usage.output_tokens", output);
        ServerToolTags(activity, response.Usage);
        if (captureContent)
        {
            activity.SetTag("gen_ai.output.messages", response.ToMessageJson().GetRawText());
        }
    }

    /// <summary>Measures the tokens of an answer whose chat span does not: a batch result (<paramref name="mode"/> <c>batch</c>:
    /// Claude charged it at the batch price; no operation duration either, as its time is mostly queueing at Claude), the
    /// compaction summariser's streamed answer (<c>streaming</c>), or the part of a stream that failed mid-way (as far as it
    /// went; the run's usage counts it too). Nothing when the answer reported no tokens (it failed before message_start).</summary>
    public static void Answered(string model, Claude.ModelResponse response, string mode)
    {
        var usage = response.Usage;
        ServerToolsUsed(model, usage, mode);
        if (!TokenUsage.Enabled || usage.InputTokens + usage.CacheReadInputTokens + usage.CacheCreationInputTokens + usage.OutputTokens == 0)
        {
            return;
        }

        KeyValuePair<string, object?>[] tags =
        [
            new("gen_ai.operation.name", "chat"), new("gen_ai.provider.name", Provider), new("gen_ai.request.model", model),
            new("gen_ai.response.model", response.Model ?? model), new("agentpg.run.mode", mode),
        ];
        TokenUsage.Record(response.Usage.InputTokens + response.Usage.CacheReadInputTokens + response.Usage.CacheCreationInputTokens,
            [.. tags, new("gen_ai.token.type", "input")]);
        TokenUsage.Record(response.Usage.OutputTokens, [.. tags, new("gen_ai.token.type", "output")]);
    }

    /// <summary>Counts an answer's billed server tool uses (<see cref="ServerToolRequests"/>); nothing when it ran none.</summary>
    public static void ServerToolsUsed(string model, Usage usage, string mode)
    {
        if (!ServerToolRequests.Enabled || usage.WebSearchRequests + usage.WebFetchRequests == 0)
        {
            return;
        }

        foreach (var (tool, count) in new[] { ("web_search", usage.WebSearchRequests), ("web_fetch", usage.WebFetchRequests) })
        {
            if (count > 0)
            {
                ServerToolRequests.Add(count, new KeyValuePair<string, object?>("gen_ai.tool.name", tool),
                    new KeyValuePair<string, object?>("gen_ai.provider.name", Provider), new KeyValuePair<string, object?>("gen_ai.request.model", model),
                    new KeyValuePair<string, object?>("agentpg.run.mode", mode));
            }
        }
    }

    // The server tool uses of a chat span's answer, when it ran any (most answers do not: no tag).
    private static void ServerToolTags(Activity activity, Usage usage)
    {
        if (usage.WebSearchRequests > 0)
        {
            activity.SetTag("agentpg.usage.web_search_requests", usage.WebSearchRequests);
        }

        if (usage.WebFetchRequests > 0)
        {
            activity.SetTag("agentpg.usage.web_fetch_requests", usage.WebFetchRequests);
        }
    }

    public static void ChatFailed(Activity? activity, string model, string errorType, TimeSpan duration)
    {
        OperationDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("gen_ai.operation.name", "chat"),
            new KeyValuePair<string, object?>("gen_ai.provider.name", Provider), new KeyValuePair<string, object?>("gen_ai.request.model", model),
            new KeyValuePair<string, object?>("error.type", errorType));
        activity.Error(errorType, null);
    }

    public static Activity? StartTool(Workers.ClaimedTool claimed, bool captureContent)
    {
        var execution = claimed.Execution;
        var activity = Start("execute_tool " + execution.ToolName, ActivityKind.Internal, claimed.TraceParent);
        if (activity is null)
        {
            return null;
        }

        activity.SetTag("gen_ai.operation.name", "execute_tool");
        activity.SetTag("gen_ai.provider.name", Provider);
        activity.SetTag("gen_ai.tool.name", execution.ToolName);
        activity.SetTag("gen_ai.tool.call.id", execution.ToolUseId);
        activity.SetTag("gen_ai.tool.type", execution.IsAgentTool ? "agent" : "function");
        activity.SetTag("gen_ai.conversation.id", claimed.SessionId.ToString());
        activity.SetTag("agentpg.run.id", execution.RunId.ToString());
        activity.SetTag("agentpg.tool.execution_id", execution.Id.ToString());
        if (captureContent)
        {
            activity.SetTag("gen_ai.tool.call.arguments", execution.ToolInput.GetRawText());
        }

        return activity;
    }

    /// <summary>Counts a tool execution attempt that ended with a result and marks its span failed when the result is an error. The
    /// span's status description is the error message, unless it is the error result the tool returned
    /// (<paramref name="errorIsOutput"/>): that is the tool's output, content, recorded only with
    /// <see cref="TelemetryOptions.CaptureContent"/>.</summary>
    public static void ToolCompleted(Activity? activity, string toolName, string? output, bool isError, string? errorMessage, bool errorIsOutput,
        bool captureContent)
    {
        ToolExecutions.Add(1, new KeyValuePair<string, object?>("gen_ai.tool.name", toolName),
            new KeyValuePair<string, object?>("agentpg.tool.outcome", isError ? "error" : "success"));
        if (activity is null || activity.Source != Source)
        {
            return;
        }

        if (isError)
        {
            activity.Error("tool_error", errorIsOutput && !captureContent ? null : errorMessage);
        }

        if (captureContent)
        {
            activity.SetTag("gen_ai.tool.call.result", output ?? errorMessage);
        }
    }

    /// <summary>An attempt that threw and will be retried: counted as an error attempt, its span marked failed.</summary>
    public static void ToolAttemptFailed(Activity? activity, string toolName, string errorMessage)
    {
        ToolExecutions.Add(1, new KeyValuePair<string, object?>("gen_ai.tool.name", toolName),
            new KeyValuePair<string, object?>("agentpg.tool.outcome", "error"));
        if (activity is not null && activity.Source == Source)
        {
            activity.Error("tool_error", errorMessage);
        }
    }

    private static string Mode(Run run) => run.RunMode == RunMode.Batch ? "batch" : "streaming";

    public static void Error(this Activity? activity, string errorType, string? description)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetStatus(ActivityStatusCode.Error, description);
        activity.SetTag("error.type", errorType);
    }
}

/// <summary>The pending-run count of one started client's schema for <c>agentpg.runs.pending</c>: observed synchronously,
/// refreshed in the background so a metrics collection never waits for the database.</summary>
/// <remarks>The count is the schema's, whoever reads it: only the instance that leads the schema reports it, so a dashboard
/// that sums the gauge over instances (what OpenTelemetry backends do with a gauge's series) gets the queue's length, not
/// that many times it. An instance that does not lead neither reports nor reads it.</remarks>
internal sealed class PendingRunsProbe(string schema, string instanceId, Func<CancellationToken, Task<long>> count, Func<bool> isLeader,
    TimeProvider time)
{
    private static readonly TimeSpan s_refresh = TimeSpan.FromSeconds(5);
    private long _value = -1;
    private long _refreshedAt;
    private int _refreshing;

    public string Schema { get; } = schema;

    public string InstanceId { get; } = instanceId;

    public long? Observe()
    {
        if (!isLeader())
        {
            // A count read while leading before is stale by the time this instance leads again.
            Volatile.Write(ref _value, -1);
            Volatile.Write(ref _refreshedAt, 0);
            return null;
        }

        if ((_refreshedAt == 0 || time.GetElapsedTime(Volatile.Read(ref _refreshedAt)) >= s_refresh)
            && Interlocked.CompareExchange(ref _refreshing, 1, 0) == 0)
        {
            _ = RefreshAsync();
        }

        var value = Volatile.Read(ref _value);
        return value < 0 ? null : value;
    }

    /// <summary>Reads the count now (first observation, tests).</summary>
    public async Task RefreshAsync()
    {
        try
        {
            Volatile.Write(ref _value, await count(CancellationToken.None).ConfigureAwait(false));
            Volatile.Write(ref _refreshedAt, time.GetTimestamp());
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException or InvalidOperationException)
        {
            // Keep the last value; the next observation tries again.
        }
        finally
        {
            Volatile.Write(ref _refreshing, 0);
        }
    }
}
