using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace AgentPg.Tests.Hosting;

public sealed class AgentPgHostingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task AddAgentPg_WorkerToolAndAgent_CompletesToolRoundTripWithAFreshScopePerExecution()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.ToolUse("scoped_lookup", new { key = "a" }), FakeContentBlock.ToolUse("scoped_lookup", new { key = "b" }))
            : FakeReply.Text(string.Join(",", r.ToolResults.Select(t => t.Content).Order(StringComparer.Ordinal))));
        var builder = HostFactory.Builder();
        builder.Services.AddSingleton<ScopeLog>();
        builder.Services.AddScoped<ScopedDependency>();
        var agentName = "hosted_" + Guid.NewGuid().ToString("N")[..8];
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddTool<ScopedLookupTool>()
            .AddAgent(new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["scoped_lookup"] });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            Assert.True(client.IsStarted);
            var agent = await client.GetAgentByNameAsync(agentName);

            var response = await Eventually.WithinAsync(
                client.RunFastSyncAsync(await client.NewSessionAsync(), agent.Id, "look both up"), "the hosted worker to finish the run");

            Assert.Equal("a:1,b:1", response.Text);
            var log = host.Services.GetRequiredService<ScopeLog>();
            var used = log.UsedBy.Values.ToList();
            Assert.Equal(2, used.Count);
            Assert.NotEqual(used[0], used[1]);
            Assert.All(used, id => Assert.Contains(id, log.Disposed));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task AddTool_ScopedToolThatIsOnlyAsyncDisposable_HostStartsAndEveryInstanceIsDisposed()
    {
        // Before the fix the host refused to start: the scope that reads the tool's name was disposed synchronously, and the
        // container throws for a service that implements only IAsyncDisposable.
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("async_disposable", new { }) : FakeReply.Text(r.ToolResults[0].Content));
        var builder = HostFactory.Builder();
        builder.Services.AddSingleton<ScopeLog>();
        var agentName = "async_disposable_" + Guid.NewGuid().ToString("N")[..8];
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddTool<AsyncDisposableTool>()
            .AddAgent(new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["async_disposable"] });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            var log = host.Services.GetRequiredService<ScopeLog>();
            // The instance the name was read from, when the client was created.
            Assert.Single(log.Disposed);
            var agent = await client.GetAgentByNameAsync(agentName);

            var response = await Eventually.WithinAsync(
                client.RunFastSyncAsync(await client.NewSessionAsync(), agent.Id, "go"), "the hosted worker to finish the run");

            Assert.Equal("done", response.Text);
            var execution = Assert.Single(log.UsedBy).Value;
            Assert.Contains(execution, log.Disposed);
            Assert.Equal(2, log.Disposed.Count);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task AddAgentPg_CalledTwice_RegistersOneClientKeepsBothConfigurationsAndTakesTimeAndLoggingFromTheContainer()
    {
        var builder = HostFactory.Builder();
        var time = new ContainerTimeProvider();
        builder.Services.AddSingleton<TimeProvider>(time);
        builder.Services.AddLogging();
        var first = builder.Services.AddAgentPg(HostFactory.Options(db, null));
        var second = builder.Services.AddAgentPg(o => o.MaxConcurrentTools = 3);
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<AgentPgClient>();

        Assert.Same(first.Services, second.Services);
        Assert.Single(host.Services.GetServices<AgentPgClient>());
        Assert.Equal(db.Schema, client.Options.Schema);
        Assert.Equal(3, client.Options.MaxConcurrentTools);
        Assert.Same(time, client.Options.TimeProvider);
        Assert.Same(host.Services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>(), client.Options.LoggerFactory);
        Assert.False(client.IsStarted);
        await host.StopAsync();
    }

    [DatabaseFact]
    public async Task AddAgentPg_Configuration_BindsTimeSpanStringsAndNestedOptions()
    {
        var json = $$"""
            {
              "AgentPg": {
                "Schema": "{{db.Schema}}",
                "ApiKey": "from-config",
                "InstanceName": "config-worker",
                "MaxConcurrentTools": 7,
                "HeartbeatInterval": "00:00:02",
                "InstanceTtl": "00:00:30",
                "ToolTimeout": "00:01:30",
                "RunRescue": { "Timeout": "00:10:00", "MaxAttempts": 5 },
                "ToolRetry": { "MaxAttempts": 4, "Jitter": 0.25 }
              }
            }
            """;
        var builder = HostFactory.Builder();
        builder.Configuration.AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json)));
        builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg"));
        using var host = builder.Build();
        await host.StartAsync();

        var options = host.Services.GetRequiredService<AgentPgClient>().Options;
        Assert.Equal(db.Schema, options.Schema);
        Assert.Equal("from-config", options.ApiKey);
        Assert.Equal("config-worker", options.InstanceName);
        Assert.Equal(7, options.MaxConcurrentTools);
        Assert.Equal(TimeSpan.FromSeconds(2), options.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(30), options.InstanceTtl);
        Assert.Equal(TimeSpan.FromSeconds(90), options.ToolTimeout);
        Assert.Equal(TimeSpan.FromMinutes(10), options.RunRescue.Timeout);
        Assert.Equal(5, options.RunRescue.MaxAttempts);
        Assert.Equal(TimeSpan.FromMinutes(1), options.RunRescue.Interval);
        Assert.Equal(4, options.ToolRetry.MaxAttempts);
        Assert.Equal(0.25, options.ToolRetry.Jitter);
        await host.StopAsync();
    }

    [Fact]
    public async Task StartAsync_InvalidConfiguredValue_FailsNamingTheField()
    {
        var builder = HostFactory.Builder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["AgentPg:HeartbeatInterval"] = "-00:00:01",
            ["AgentPg:RunRescue:MaxAttempts"] = "0",
            ["AgentPg:RunPollInterval"] = "60.00:00:00",
        });
        builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg")).AddWorker();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("AgentPgOptions.HeartbeatInterval must be between 1 ms and 49.7 days (the range .NET timers accept) (was -00:00:01)",
            error.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgOptions.RunRescue.MaxAttempts must be greater than zero", error.Message, StringComparison.Ordinal);
        // ValidateOnStart reports exactly what AgentPgClient.Create would.
        var same = new AgentPgOptions { HeartbeatInterval = TimeSpan.FromSeconds(-1), RunPollInterval = TimeSpan.FromDays(60) };
        same.RunRescue.MaxAttempts = 0;
        Assert.Equal(same.Validate(), error.Failures);
    }

    // Before: a misspelled key was ignored, and the option silently kept its default (the pool sized for 5 streams, a
    // rescue after 5 minutes …) while the configuration file said otherwise.
    [Theory]
    [InlineData("AgentPg:MaxConcurentStreamingRuns", "20", "'MaxConcurentStreamingRuns'", "AgentPg.AgentPgOptions")]
    [InlineData("AgentPg:RunRescue:Timout", "00:10:00", "'Timout'", "AgentPg.RunRescueOptions")]
    public async Task StartAsync_MisspelledConfigurationKey_FailsNamingIt(string key, string value, string named, string type)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["AgentPg:ApiKey"] = "k", [key] = value });
        builder.Services.AddNpgsqlDataSource(TestDatabase.ConnectionString);
        builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg"));
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());

        Assert.Contains(named, error.Message, StringComparison.Ordinal);
        Assert.Contains(type, error.Message, StringComparison.Ordinal);
    }

    // Before: accepted, and the host failed to start with the same message.
    [Fact]
    public void AddAgent_InvalidDefinition_ThrowsAtTheCallNamingTheField()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var agentpg = builder.Services.AddAgentPg(o => o.ApiKey = "k");

        var ex = Assert.Throws<ArgumentException>(() => agentpg.AddAgent(new AgentDefinition { Name = "support", Model = " " }));

        Assert.Contains("AgentDefinition.Model is required for agent 'support'", ex.Message, StringComparison.Ordinal);
        Assert.Equal("definition", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => agentpg.AddAgent(new AgentDefinition { Name = "support", Model = "claude-sonnet-4-5", MaxTokens = 0 }));
        Assert.Contains("AgentDefinition.MaxTokens must be positive", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_NoDataSource_NamesBothWaysToProvideOne()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddAgentPg(o => o.ApiKey = "k").AddWorker();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());

        Assert.Contains("AddNpgsqlDataSource", error.Message, StringComparison.Ordinal);
        Assert.Contains("UseDataSource", error.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task UseDataSource_Factory_WinsOverTheContainersDataSource()
    {
        await using var own = TestDatabase.CreateDataSource(b => b.ApplicationName = "agentpg-own");
        var builder = HostFactory.Builder();
        builder.Services.AddAgentPg(HostFactory.Options(db, null)).UseDataSource(_ => own);
        using var host = builder.Build();
        await host.StartAsync();

        Assert.Same(own, host.Services.GetRequiredService<AgentPgClient>().DataSource);
        await host.StopAsync();
    }

    [DatabaseFact]
    public async Task StopAsync_HostShutsDownWithAToolInFlight_ReleasesItAndAnotherHostCompletesTheRun()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("long_job", new { }) : FakeReply.Text(r.ToolResults[0].Content));
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var agentName = "shutdown_" + Guid.NewGuid().ToString("N")[..8];
        var definition = new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["long_job"] };

        var first = HostFactory.Builder();
        first.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMilliseconds(300));
        first.Services.AddAgentPg(HostFactory.Options(db, claude)).AddWorker().AddAgent(definition)
            .AddTool(new TestTool("long_job", async (_, _, ct) =>
            {
                started.TrySetResult();
                // Never finishes on this host: only the shutdown's hard stop ends it.
                await new TaskCompletionSource().Task.WaitAsync(ct);
                return "unreachable";
            }));
        using var firstHost = first.Build();
        await firstHost.StartAsync();
        var client = firstHost.Services.GetRequiredService<AgentPgClient>();
        var firstInstance = client.InstanceId;
        var agent = await client.GetAgentByNameAsync(agentName);
        var run = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "go");
        await Eventually.WithinAsync(started.Task, "the tool to start on the first host");

        await Eventually.WithinAsync(firstHost.StopAsync(), "the first host to stop within its shutdown timeout");

        Assert.False(client.IsStarted);
        Assert.Equal("pending_tools", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Equal("pending", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", firstInstance));

        var second = HostFactory.Builder();
        second.Services.AddAgentPg(HostFactory.Options(db, claude)).AddWorker().AddAgent(definition)
            .AddTool(new TestTool("long_job", (_, _, _) => Task.FromResult("done on the second host")));
        using var secondHost = second.Build();
        await secondHost.StartAsync();
        try
        {
            var other = secondHost.Services.GetRequiredService<AgentPgClient>();
            var response = await Eventually.WithinAsync(other.WaitForRunAsync(run), "the second host to complete the released run");

            Assert.Equal("done on the second host", response.Text);
            Assert.Equal(0, await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_runs WHERE id = $1", run));
            Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND state = 'failed'", run));
        }
        finally
        {
            await secondHost.StopAsync();
        }
    }

    private sealed class ContainerTimeProvider : TimeProvider;

    /// <summary>Singleton record of which scoped dependency each execution used and which were disposed.</summary>
    public sealed class ScopeLog
    {
        public ConcurrentDictionary<Guid, Guid> UsedBy { get; } = new();

        public ConcurrentBag<Guid> Disposed { get; } = [];
    }

    public sealed class ScopedDependency(ScopeLog log) : IDisposable
    {
        public Guid Id { get; } = Guid.NewGuid();

        public int Calls { get; set; }

        public void Dispose() => log.Disposed.Add(Id);
    }

    /// <summary>A scoped tool that can only be disposed asynchronously (it holds, say, an async client).</summary>
    public sealed class AsyncDisposableTool(ScopeLog log) : ITool, IAsyncDisposable
    {
        private readonly Guid _id = Guid.NewGuid();

        public string Name => "async_disposable";

        public string Description => "Does something with an async-only disposable resource.";

        public ToolSchema InputSchema { get; } = new();

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        {
            log.UsedBy[context.ToolExecutionId] = _id;
            return Task.FromResult("done");
        }

        public async ValueTask DisposeAsync()
        {
            await Task.Yield();
            log.Disposed.Add(_id);
        }
    }

    public sealed class ScopedLookupTool(ScopedDependency dependency, ScopeLog log) : ITool
    {
        public string Name => "scoped_lookup";

        public string Description => "Looks a key up with a scoped dependency.";

        public ToolSchema InputSchema { get; } = new()
        {
            Properties = new Dictionary<string, PropertyDef> { ["key"] = new() { Type = "string" } },
            Required = ["key"],
        };

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        {
            log.UsedBy[context.ToolExecutionId] = dependency.Id;
            // A dependency shared between executions would count past 1.
            dependency.Calls++;
            return Task.FromResult($"{input.GetProperty("key").GetString()}:{dependency.Calls}");
        }
    }
}
