using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Npgsql;

namespace AgentPg.Tests.Tools;

public sealed class ToolExecutionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["city"] = new() { Type = "string", MinLength = 2 },
            ["days"] = new() { Type = "integer", Minimum = 1, Maximum = 7 },
            ["unit"] = new() { Type = "string", Enum = ["celsius", "fahrenheit"] },
        },
        Required = ["city"],
    };

    /// <summary>Claude calls <paramref name="tool"/> with <paramref name="input"/>, then answers with the tool result it got.</summary>
    private static void ScriptOneCall(FakeClaudeServer claude, string tool, object input)
        => claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse(tool, input));

    private static async Task<(Harness H, Guid Session, AgentDefinition Agent)> SetUpAsync(SchemaFixture db, Action<AgentPgOptions>? configure, params ITool[] tools)
    {
        var h = await Harness.StartAsync(db, configure, start: true, tools);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        return (h, await h.Client.NewSessionAsync(), agent);
    }

    [DatabaseFact]
    public async Task InvalidInput_IsReportedToClaudeWithoutCallingTheTool()
    {
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("forecast", (_, _, _) => Task.FromResult("called " + Interlocked.Increment(ref calls)), s_citySchema));
        await using var scope = h;
        ScriptOneCall(h.Claude, "forecast", new { city = "P", days = 9.5, unit = "kelvin" });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "forecast please");

        Assert.Equal(0, calls);
        Assert.StartsWith("result: Invalid input for tool 'forecast': ", response.Text, StringComparison.Ordinal);
        Assert.Contains("'city' must be at least 2 characters long", response.Text, StringComparison.Ordinal);
        Assert.Contains("'days' must be an integer, not a number", response.Text, StringComparison.Ordinal);
        Assert.Contains("'unit' must be one of [celsius, fahrenheit]", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.True(call.IsError);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT attempt_count::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
    }

    [DatabaseFact]
    public async Task MissingRequiredProperty_IsReported()
    {
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("forecast", schema: s_citySchema));
        await using var scope = h;
        ScriptOneCall(h.Claude, "forecast", new { days = 2 });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "forecast please");

        Assert.Contains("'city' is required", response.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task UnknownTool_IsReportedAsToolNotFound()
    {
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("forecast", schema: s_citySchema));
        await using var scope = h;
        ScriptOneCall(h.Claude, "teleport", new { to = "Mars" });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "go");

        Assert.Equal("result: tool not found: teleport error=True", response.Text);
        Assert.Equal(ToolExecutionState.Failed, Assert.Single(response.ToolCalls).State);
    }

    // Before: the run failed with "Processing the run failed: 23505: duplicate key value violates unique constraint
    // "tool_exec_unique_use"", which says neither what was wrong with the answer nor what to do.
    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RepeatedToolUseId_FailsTheRunSayingWhyWithoutRunningTheTool(bool streaming)
    {
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("forecast", (_, _, _) => Task.FromResult("called " + Interlocked.Increment(ref calls))));
        await using var scope = h;
        h.Claude.Respond(_ => FakeReply.Message(FakeContentBlock.ToolUse("forecast", new { city = "Paris" }, "toolu_01same"),
            FakeContentBlock.ToolUse("forecast", new { city = "Oslo" }, "toolu_01same")));

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => streaming
            ? h.Client.RunFastSyncAsync(session, agent.Id, "forecast please")
            : h.Client.RunSyncAsync(session, agent.Id, "forecast please"));

        Assert.Equal(AgentPgErrorCode.RunFailed, ex.Code);
        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("tool_use block 1 ('forecast') has the id 'toolu_01same' of an earlier tool_use block", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Regenerate the run", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("23505", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, calls);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_tool_executions te JOIN {schema}.agentpg_runs r ON r.id = te.run_id WHERE r.session_id = $1", session));
    }

    [DatabaseFact]
    public async Task ExceptionThenSuccess_IsRetriedAndSucceeds()
    {
        var attempts = new ConcurrentQueue<int>();
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("flaky", (ctx, _, _) =>
        {
            attempts.Enqueue(ctx.Attempt);
            return ctx.Attempt == 1 ? throw new InvalidOperationException("upstream hiccup") : Task.FromResult("worked on attempt " + ctx.Attempt);
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "flaky", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "try it");

        Assert.Equal("result: worked on attempt 2 error=False", response.Text);
        Assert.Equal([1, 2], attempts);
        Assert.Equal("upstream hiccup", await db.ScalarAsync<string>("SELECT last_error FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
    }

    [DatabaseFact]
    public async Task ExceptionOnEveryAttempt_FailsAfterMaxAttemptsWithTheError()
    {
        var count = 0;
        var (h, session, agent) = await SetUpAsync(db, o => o.ToolRetry.MaxAttempts = 3,
            new TestTool("broken", (_, _, _) => throw new InvalidOperationException("always broken " + Interlocked.Increment(ref count))));
        await using var scope = h;
        ScriptOneCall(h.Claude, "broken", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "try it");

        Assert.Equal(3, count);
        Assert.Equal("result: always broken 3 error=True", response.Text);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal("always broken 3", call.ErrorMessage);
    }

    [DatabaseFact]
    public async Task Snooze_RunsAgainLaterWithoutConsumingAnAttempt()
    {
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(db, o => o.ToolRetry.MaxAttempts = 1, new TestTool("rate_limited", (_, _, _) =>
            Interlocked.Increment(ref calls) == 1
                ? throw new ToolSnoozeException(TimeSpan.FromMilliseconds(150), "rate limited")
                : Task.FromResult("done after snooze")));
        await using var scope = h;
        ScriptOneCall(h.Claude, "rate_limited", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "go");

        Assert.Equal("result: done after snooze error=False", response.Text);
        Assert.Equal(2, calls);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT snooze_count::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT attempt_count::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
    }

    [DatabaseTheory]
    [InlineData("cancel", "tool cancelled: not allowed for this user")]
    [InlineData("discard", "tool discarded: unknown account")]
    public async Task CancelOrDiscard_FailsAtOnceWithoutRetry(string kind, string expected)
    {
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(db, o => o.ToolRetry.MaxAttempts = 5, new TestTool("guarded", (_, _, _) =>
        {
            Interlocked.Increment(ref calls);
            throw kind == "cancel" ? new ToolCancelException("not allowed for this user") : new ToolDiscardException("unknown account");
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "guarded", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "go");

        Assert.Equal(1, calls);
        Assert.Equal($"result: {expected} error=True", response.Text);
    }

    [DatabaseFact]
    public async Task Timeout_CancelsTheToolAndCountsAsAFailure()
    {
        // The timeout fires when the test fires it, once the attempt's tool body runs: with a real 200-ms timeout, a busy thread
        // pool could start the body after the timeout, and the attempt then ended without the tool ever running.
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        var started = Channel.CreateUnbounded<int>();
        var cancelled = 0;
        var (h, session, agent) = await SetUpAsync(db, o =>
        {
            o.ToolTimeout = timeouts.Timeout;
            o.TimeProvider = timeouts;
        }, new TestTool("slow", async (ctx, _, ct) =>
        {
            started.Writer.TryWrite(ctx.Attempt);
            try
            {
                await new TaskCompletionSource().Task.WaitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref cancelled);
                throw;
            }

            return "never";
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "slow", new { });

        var run = h.Client.RunFastSyncAsync(session, agent.Id, "go");
        foreach (var attempt in new[] { 1, 2 })
        {
            Assert.Equal(attempt, await Eventually.WithinAsync(started.Reader.ReadAsync().AsTask(), $"attempt {attempt} of the tool to start"));
            await timeouts.FireNextAsync();
        }

        var response = await Eventually.WithinAsync(run, "the run");

        Assert.Equal(2, cancelled);
        Assert.Contains("tool timed out after 00:17:00", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Timeout_ToolThatAnswersItsTokenWithAnExceptionOfItsOwn_IsReportedAsTheTimeout()
    {
        // The tool turns its cancellation into an exception of its own at once (catch and wrap), and its registration on the token
        // comes after the worker's (so it runs first). Before, Claude got the tool's "search aborted" instead of the timeout,
        // depending on which of the two noticed the cancellation first.
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        var search = new CancellationWrappingTool();
        var (h, session, agent) = await SetUpAsync(db, o =>
        {
            o.ToolTimeout = timeouts.Timeout;
            o.TimeProvider = timeouts;
            o.ToolRetry.MaxAttempts = 1;
        }, search);
        await using var scope = h;
        ScriptOneCall(h.Claude, "search", new { });

        var run = h.Client.RunFastSyncAsync(session, agent.Id, "go");
        await Eventually.WithinAsync(search.Started, "the tool to start");
        search.OpenGate();
        await Eventually.WithinAsync(search.Listening, "the tool to listen to its token");
        await timeouts.FireNextAsync();
        var response = await Eventually.WithinAsync(run, "the run");

        Assert.Equal("result: tool timed out after 00:17:00 (AgentPgOptions.ToolTimeout) error=True", response.Text);
    }

    [DatabaseTheory]
    [InlineData("synchronous")]
    [InlineData("aggregate")]
    public async Task ToolThrowingSynchronouslyOrAnAggregate_FailsTheCallAndTheWorkerGoesOn(string how)
    {
        // A Task-returning tool that throws before returning a task, and one whose task faults with an AggregateException.
        var (h, session, agent) = await SetUpAsync(db, o => o.ToolRetry.MaxAttempts = 1,
            new TestTool("nasty", (_, _, _) => how == "synchronous"
                ? throw new StackOverflowLikeException()
                : Task.FromException<string>(new AggregateException(new StackOverflowLikeException(), new InvalidOperationException()))));
        await using var scope = h;
        ScriptOneCall(h.Claude, "nasty", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "go");
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);

        // The worker still serves the next run.
        h.Claude.Enqueue(FakeReply.Text("still alive"));
        Assert.Equal("still alive", (await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "next")).Text);
    }

    [DatabaseFact]
    public async Task TransactionalTool_RollsBackWithAFailedAttemptAndNeverDuplicatesRows()
    {
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.ledger (execution_id uuid, attempt int, note text)");
        var table = $"\"{db.Schema}\".ledger";
        var (h, session, agent) = await SetUpAsync(db, null, new TransactionalTestTool("book", async (ctx, _, ct) =>
        {
            await using (var insert = new NpgsqlCommand($"INSERT INTO {table} VALUES ($1, $2, 'booked')", ctx.Transaction!.Connection, ctx.Transaction))
            {
                insert.Parameters.Add(new NpgsqlParameter { Value = ctx.ToolExecutionId });
                insert.Parameters.Add(new NpgsqlParameter { Value = ctx.Attempt });
                await insert.ExecuteNonQueryAsync(ct);
            }

            // The first attempt fails after writing: its row must disappear with it.
            return ctx.Attempt == 1 ? throw new InvalidOperationException("crashed after the insert") : "booked on attempt " + ctx.Attempt;
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "book", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "book it");

        Assert.Equal("result: booked on attempt 2 error=False", response.Text);
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT attempt FROM {table}"));
    }

    [DatabaseFact]
    public async Task TransactionalTool_ReturningWithItsReaderOpen_FailsOnceSayingSoAndItsWritesRollBack()
    {
        // Before, Claude got Npgsql's "A command is already in progress: SELECT …" (with the tool's SQL), and the tool ran again
        // on every attempt to fail the same way.
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.peeks (n int)");
        var table = $"\"{db.Schema}\".peeks";
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(db, o => o.ToolRetry.MaxAttempts = 3, new TransactionalTestTool("peek", async (ctx, _, ct) =>
        {
            Interlocked.Increment(ref calls);
            await using (var insert = new NpgsqlCommand($"INSERT INTO {table} VALUES (1)", ctx.Transaction!.Connection, ctx.Transaction))
            {
                await insert.ExecuteNonQueryAsync(ct);
            }

            var query = new NpgsqlCommand($"SELECT n FROM {table} UNION ALL SELECT 2", ctx.Transaction.Connection, ctx.Transaction);
            var reader = await query.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            return "peeked";
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "peek", new { });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "peek");

        Assert.StartsWith("result: The tool returned while a command or data reader of context.Transaction's connection was still open", response.Text,
            StringComparison.Ordinal);
        Assert.DoesNotContain("UNION", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        Assert.Equal(1, calls);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [DatabaseFact]
    public async Task Variables_OfSeveralJsonTypes_ReachTheTool()
    {
        var seen = new TaskCompletionSource<string>();
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("inspect", (ctx, _, _) =>
        {
            var address = ctx.GetVariable<Address>("address");
            seen.TrySetResult(string.Join("|",
                ctx.GetVariable<int>("tenant"),
                ctx.GetVariable<long>("tenant"),
                ctx.GetVariable<double>("ratio").ToString(System.Globalization.CultureInfo.InvariantCulture),
                ctx.GetVariable<string>("name"),
                ctx.GetVariable<bool>("vip"),
                string.Join(",", ctx.GetVariable<List<string>>("tags")),
                address.City + "/" + address.Zip,
                ctx.GetVariable<string?>("nothing") ?? "null",
                ctx.TryGetVariable<int>("missing", out _),
                ctx.GetVariableOrDefault("missing", 99),
                ctx.TryGetVariable<int>("name", out _)));
            return Task.FromResult("ok");
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "inspect", new { });

        await h.Client.RunFastSyncAsync(session, agent.Id, "go", new RunOptions
        {
            Variables = new Dictionary<string, object?>
            {
                ["tenant"] = 42,
                ["ratio"] = 0.75,
                ["name"] = "acme",
                ["vip"] = true,
                ["tags"] = new[] { "a", "b" },
                ["address"] = new Address("Paris", "75001"),
                ["nothing"] = null,
            },
        });

        Assert.Equal("42|42|0.75|acme|True|a,b|Paris/75001|null|False|99|False", await seen.Task);
        var ex = Assert.Throws<KeyNotFoundException>(() => Context().GetVariable<int>("missing"));
        Assert.Contains("RunOptions.Variables", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Callbacks_FireWithTheRightFields_AndAThrowingCallbackBreaksNothing()
    {
        var (h, session, agent) = await SetUpAsync(db, null, new TestTool("get_weather", (_, input, _) => Task.FromResult("sunny in " + input.GetProperty("city").GetString())));
        await using var scope = h;
        ScriptOneCall(h.Claude, "get_weather", new { city = "Oslo" });
        var started = new TaskCompletionSource<ToolCallEvent>();
        var completed = new TaskCompletionSource<ToolCallEvent>();
        var callerThread = Environment.CurrentManagedThreadId;

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "weather?", new RunOptions
        {
            OnToolStart = e =>
            {
                started.TrySetResult(e);
                throw new InvalidOperationException("callback bug");
            },
            OnToolComplete = e => completed.TrySetResult(e),
        });

        var start = await Eventually.WithinAsync(started.Task, "OnToolStart");
        var complete = await Eventually.WithinAsync(completed.Task, "OnToolComplete");
        Assert.Equal("result: sunny in Oslo error=False", response.Text);
        Assert.Equal(response.RunId, start.RunId);
        Assert.Equal(session, start.SessionId);
        Assert.Equal("get_weather", start.ToolName);
        Assert.Equal("Oslo", start.ToolInput.GetProperty("city").GetString());
        Assert.Equal(1, start.IterationNumber);
        Assert.False(start.IsAgentTool);
        Assert.Null(start.Output);
        Assert.Equal("sunny in Oslo", complete.Output);
        Assert.False(complete.IsError);
        Assert.True(complete.Duration > TimeSpan.Zero);
        Assert.Equal(response.RunId, complete.RunId);
    }

    [DatabaseFact]
    public async Task ParallelToolUses_ExecuteConcurrentlyAndResultsKeepClaudesOrder()
    {
        var bothStarted = new CountdownEvent(2);
        var gate = new TaskCompletionSource();
        Task<string> Blocking(string name)
        {
            bothStarted.Signal();
            if (bothStarted.IsSet)
            {
                gate.TrySetResult();
            }

            return gate.Task.WaitAsync(TimeSpan.FromSeconds(20)).ContinueWith(_ => name + " done", TaskScheduler.Default);
        }

        var (h, session, agent) = await SetUpAsync(db, null,
            new TestTool("first_tool", (_, _, _) => Blocking("first")),
            new TestTool("second_tool", (_, _, _) => Blocking("second")));
        await using var scope = h;
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text(string.Join(" + ", request.ToolResults.Select(r => r.Content)))
            : FakeReply.Message(FakeContentBlock.ToolUse("second_tool", new { }, "toolu_b"), FakeContentBlock.ToolUse("first_tool", new { }, "toolu_a")) with { StopReason = "tool_use" });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "both");

        // Each tool waited until the other had started: they ran at the same time.
        Assert.Equal("second done + first done", response.Text);
        var results = (await h.Client.GetMessagesAsync(session))[2].Content;
        Assert.Equal(["toolu_b", "toolu_a"], results.Select(b => b.ToolResultForUseId));
        Assert.Equal(["second_tool", "first_tool"], response.ToolCalls.Select(c => c.Name));
    }

    [DatabaseFact]
    public async Task FunctionTool_FromADelegateAndFromAnAIFunction_GetsContextAndTypedArguments()
    {
        var forecast = FunctionTool.Create("forecast", "Forecast for a city", (string city, int days, ToolContext context) =>
            $"{days} days of sun in {city} for run {context.RunId}");
        Assert.Equal(["city", "days"], forecast.InputSchema.Required);
        Assert.Equal("integer", forecast.InputSchema.Properties["days"].Type);
        Assert.False(forecast.InputSchema.Properties.ContainsKey("context"));

        var (h, session, agent) = await SetUpAsync(db, null, forecast);
        await using var scope = h;
        h.Client.RegisterTool(AIFunctionFactory.Create((string text) => text.ToUpperInvariant(), "shout", "Upper-cases text"));
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text(string.Join(" | ", request.ToolResults.Select(r => r.Content)))
            : FakeReply.Message(FakeContentBlock.ToolUse("forecast", new { city = "Rome", days = 3 }), FakeContentBlock.ToolUse("shout", new { text = "hi" })) with { StopReason = "tool_use" });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "go");

        Assert.Equal($"3 days of sun in Rome for run {response.RunId} | HI", response.Text);
        var sentTools = h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("tools");
        Assert.Equal(["forecast", "shout"], sentTools.EnumerateArray().Select(t => t.GetProperty("name").GetString()));
    }

    private static ToolContext Context() => ToolContext.Create();

    private sealed record Address(string City, string Zip);

    private sealed class StackOverflowLikeException : Exception;

    private sealed class TransactionalTestTool(string name, Func<ToolContext, JsonElement, CancellationToken, Task<string>> execute) : ITransactionalTool
    {
        public string Name => name;

        public string Description => "A transactional test tool";

        public ToolSchema InputSchema { get; } = new();

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => execute(context, input, cancellationToken);
    }
}
