using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Lifecycle;

public sealed class ClientLifecycleTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task StartAsync_FailingAfterTheInstanceIsRegistered_RemovesTheInstanceRow()
    {
        // StartAsync is cancelled (a host's startup cancelled) while it waits for its LISTEN connection, after the instance
        // and its tools were registered. Before, the row stayed until InstanceTtl: an instance that never started, listed as
        // live (agentpg status, the admin UI) with its tools. The LISTEN connection is held open by a connection initializer:
        // without pooling, the first connection opened once the instance row exists is the listener's.
        string? instanceId = null;
        var held = 0;
        var blocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = new Npgsql.NpgsqlDataSourceBuilder(TestDatabase.ConnectionString + ";Pooling=false");
        builder.UsePhysicalConnectionInitializer(_ => throw new NotSupportedException("AgentPg opens connections asynchronously"), async connection =>
        {
            if (Volatile.Read(ref instanceId) is not { } id || Volatile.Read(ref held) != 0)
            {
                return;
            }

            await using var registered = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM \"{db.Schema}\".agentpg_instances WHERE id = $1", connection);
            registered.Parameters.Add(new Npgsql.NpgsqlParameter { Value = id });
            if ((long)(await registered.ExecuteScalarAsync())! > 0 && Interlocked.Exchange(ref held, 1) == 0)
            {
                blocked.TrySetResult();
                await release.Task;
            }
        });
        await using var dataSource = builder.Build();
        await using var client = db.CreateClient(dataSource);
        client.RegisterTool(new TestTool("get_weather"));
        Volatile.Write(ref instanceId, client.InstanceId);
        using var cancel = new CancellationTokenSource();

        var start = client.StartAsync(cancel.Token);
        await Eventually.WithinAsync(blocked.Task, "StartAsync registered the instance and opens its LISTEN connection");
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => start);

        try
        {
            Assert.False(client.IsStarted);
            Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
            Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1", client.InstanceId));
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [DatabaseFact]
    public async Task StartAsync_RegistersTheInstanceAndItsTools_StopAsyncRemovesThem()
    {
        await using var client = db.CreateClient(o => o.InstanceName = "worker-a");
        client.RegisterTool(new TestTool("get_weather"));
        client.RegisterTool(new TestTool("calculator"));

        await client.StartAsync();

        Assert.True(client.IsStarted);
        Assert.Equal("worker-a", await db.ScalarAsync<string>("SELECT name FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
        Assert.Equal(Environment.ProcessId, await db.ScalarAsync<int>("SELECT pid FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1", client.InstanceId));
        Assert.Equal("{\"type\": \"object\", \"properties\": {}}",
            await db.ScalarAsync<string>("SELECT input_schema::text FROM {schema}.agentpg_tools WHERE name = 'calculator'"));

        await client.StopAsync();

        Assert.False(client.IsStarted);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1", client.InstanceId));
    }

    [DatabaseFact]
    public async Task DisposeAsync_CalledConcurrently_DisposesOnceAndEveryCallCompletes()
    {
        var client = db.CreateClient();
        await client.StartAsync();

        // Review: the second of two concurrent calls used to hit the disposed lifecycle semaphore.
        var calls = Enumerable.Range(0, 8).Select(_ => Task.Run(async () => await client.DisposeAsync())).ToList();
        calls.Add(Task.Run(() => client.StopAsync()));
        await Eventually.WithinAsync(Task.WhenAll(calls), "every DisposeAsync and StopAsync call");

        Assert.False(client.IsStarted);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
        await client.DisposeAsync();
        await client.StopAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.StartAsync());
    }

    [DatabaseFact]
    public async Task DisposeAsync_EndsOpenWatchesAndWaitsWithObjectDisposed_AndStopsTheirReaders()
    {
        // A client disposed while callers watch or wait on a run nobody processes (no instance started). Before, the watch's
        // reader went on polling the database with the client's data source (after the host disposed it: a warning every few
        // seconds, forever) and neither call ever returned.
        var client = db.CreateClient(o => o.RunPollInterval = TimeSpan.FromMilliseconds(100));
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "idle_" + Guid.NewGuid().ToString("N")[..6], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        var runId = await client.RunAsync(session, agent.Id, "Nobody will answer this.");
        var watching = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watch = Task.Run(async () =>
        {
            await foreach (var e in client.WatchRunAsync(runId))
            {
                watching.TrySetResult();
            }
        });
        await Eventually.WithinAsync(watching.Task, "the watch to replay the pending run's creation");
        var wait = client.WaitForRunAsync(runId);
        Assert.Equal(1, client.ActiveEventFeeds);

        await Eventually.WithinAsync(client.DisposeAsync().AsTask(), "DisposeAsync with a watch and a wait open");

        var watchEnded = await Assert.ThrowsAsync<ObjectDisposedException>(() => Eventually.WithinAsync(watch, "the watch to end"));
        Assert.Equal(nameof(AgentPgClient), watchEnded.ObjectName);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Eventually.WithinAsync(wait, "the wait to end"));
        Assert.Equal(0, client.ActiveEventFeeds);
        Assert.Equal(0, client.Engine.Waiters.Count);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.WaitForRunAsync(runId));
    }

    [DatabaseFact]
    public async Task RegisterTool_AfterStart_IsSyncedToTheDatabase()
    {
        await using var client = db.CreateClient();
        await client.StartAsync();

        client.RegisterTool(new TestTool("late_tool"));

        await Eventually.TrueAsync(
            async () => await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = 'late_tool'", client.InstanceId) == 1,
            "the tool registered after start is in agentpg_instance_tools");
    }

    [DatabaseFact]
    public async Task StartAsync_Twice_ThrowsInvalidOperationAndKeepsRunning()
    {
        await using var client = db.CreateClient();
        await client.StartAsync();

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => client.StartAsync());

        Assert.Contains("already started", ex.Message, StringComparison.Ordinal);
        Assert.Contains("StopAsync", ex.Message, StringComparison.Ordinal);
        Assert.True(client.IsStarted);
    }

    [DatabaseFact]
    public async Task StartAsync_AfterStop_StartsAgain()
    {
        await using var client = db.CreateClient();
        await client.StartAsync();
        await client.StopAsync();

        await client.StartAsync();

        Assert.True(client.IsStarted);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
    }

    [DatabaseFact]
    public async Task StopAsync_NotStarted_DoesNothing()
    {
        await using var client = db.CreateClient();
        await client.StopAsync();
        Assert.False(client.IsStarted);
    }

    [DatabaseFact]
    public async Task StartAsync_NoApiKey_ThrowsInvalidOperationWithTheFix()
    {
        var previous = Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY");
        AgentPgClient client;
        try
        {
            Environment.SetEnvironmentVariable("ANTHROPIC_API_KEY", null);
            client = db.CreateClient(o => o.ApiKey = null);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ANTHROPIC_API_KEY", previous);
        }

        await using (client)
        {
            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => client.StartAsync());
            Assert.Contains("ANTHROPIC_API_KEY", ex.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("dots.not.allowed")]
    [InlineData("a_name_that_is_far_too_long_for_claude_because_it_has_over_64_chars")]
    public void RegisterTool_InvalidName_ThrowsArgumentException(string name)
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());

        var ex = Assert.Throws<ArgumentException>(() => client.RegisterTool(new TestTool(name)));

        Assert.Contains("[a-zA-Z0-9_-]", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RegisterTool_SchemaNotAnObject_ThrowsArgumentException()
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());

        var ex = Assert.Throws<ArgumentException>(() => client.RegisterTool(new TestTool("t", schema: new ToolSchema { Type = "string" })));

        Assert.Contains("'object'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RegisterTool_RequiredPropertyNotDefined_ThrowsArgumentException()
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());

        var ex = Assert.Throws<ArgumentException>(() => client.RegisterTool(new TestTool("t", schema: new ToolSchema { Required = ["city"] })));

        Assert.Contains("city", ex.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, ToolSchema, string> UnusableSchemas() => new()
    {
        { "Required null", new ToolSchema { Required = null! }, "Required is null" },
        { "Properties null", new ToolSchema { Properties = null! }, "Properties is null" },
        { "null property", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["city"] = null! } }, "null definition for property 'city'" },
        { "unknown type", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "strnig" } } },
            "property 'city' the type 'strnig', which is not a JSON Schema type; use one of string, number, integer" },
        { "unknown nested type", new ToolSchema
            {
                Properties = new Dictionary<string, PropertyDef>
                {
                    ["stops"] = new() { Type = "array", Items = new() { Type = "object", Properties = new Dictionary<string, PropertyDef> { ["at"] = new() { Type = "int" } } } },
                },
            }, "property 'stops[].at' the type 'int'" },
        { "invalid pattern", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["zip"] = new() { Type = "string", Pattern = "([0-9]" } } },
            "property 'zip' the pattern '([0-9]', which is not a valid regular expression" },
        { "Minimum above Maximum", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "integer", Minimum = 5, Maximum = 3 } } },
            "property 'n' Minimum 5 above Maximum 3: no input could pass it" },
        { "empty exclusive range", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "number", ExclusiveMinimum = 1, ExclusiveMaximum = 1 } } },
            "property 'n' ExclusiveMinimum 1 not below ExclusiveMaximum 1" },
        { "Minimum at ExclusiveMaximum", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "number", Minimum = 2, ExclusiveMaximum = 2 } } },
            "property 'n' Minimum 2 not below ExclusiveMaximum 2" },
        { "MinLength above MaxLength", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["s"] = new() { Type = "string", MinLength = 10, MaxLength = 2 } } },
            "property 's' MinLength 10 above MaxLength 2" },
        { "negative MaxItems", new ToolSchema
            {
                Properties = new Dictionary<string, PropertyDef>
                {
                    ["o"] = new() { Type = "object", Properties = new Dictionary<string, PropertyDef> { ["tags"] = new() { Type = "array", MaxItems = -1 } } },
                },
            }, "property 'o.tags' a negative MaxItems (-1)" },
        { "empty enum", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["unit"] = new() { Type = "string", Enum = [] } } },
            "property 'unit' an empty Enum (no value is allowed)" },
        { "NUL in a description", new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string", Description = "the\0city" } } },
            "The input schema of tool 't' at 'properties.city.description' contains the character U+0000 (NUL) at index 3" },
    };

    // Before: a NullReferenceException (Required null), or accepted and then refused by Claude on every run that offers the tool
    // (unknown type), never checked (invalid pattern), or failing the background registration (U+0000).
    [Theory]
    [MemberData(nameof(UnusableSchemas))]
    public void RegisterTool_SchemaClaudeWouldRefuseOrThatCannotBeChecked_ThrowsArgumentExceptionSayingWhatToFix(string scenario, ToolSchema schema, string message)
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());

        var ex = Assert.Throws<ArgumentException>(() => client.RegisterTool(new TestTool("t", schema: schema)));

        Assert.True(ex.Message.Contains(message, StringComparison.Ordinal), $"{scenario}: {ex.Message}");
        Assert.Equal("tool", ex.ParamName);
        Assert.Null(client.GetTool("t"));
    }

    [Fact]
    public void RegisterTool_BoundsThatLeaveOneValue_AreAccepted()
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());
        var schema = new ToolSchema
        {
            Properties = new Dictionary<string, PropertyDef>
            {
                ["n"] = new() { Type = "integer", Minimum = 3, Maximum = 3 },
                ["x"] = new() { Type = "number", ExclusiveMinimum = 1, Maximum = 2 },
                ["code"] = new() { Type = "string", MinLength = 2, MaxLength = 2, Enum = ["FR", "IT"] },
                ["tags"] = new() { Type = "array", MinItems = 0, MaxItems = 0 },
            },
        };

        client.RegisterTool(new TestTool("t", schema: schema));

        Assert.NotNull(client.GetTool("t"));
    }

    [Fact]
    public void RegisterTool_DescriptionWithNul_ThrowsArgumentException()
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());

        var ex = Assert.Throws<ArgumentException>(() => client.RegisterTool(new TestTool("t") { Description = "finds\0things" }));

        Assert.Contains("The description of tool 't' contains the character U+0000 (NUL) at index 5", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GetTool_AndGetAllToolNames_ReflectRegistrations()
    {
        var client = AgentPgClient.Create(TestDatabase.DataSource, new AgentPgOptions());
        var first = new TestTool("b_tool");
        client.RegisterTool(first);
        client.RegisterTool(new TestTool("a_tool"));
        var replacement = new TestTool("b_tool");
        client.RegisterTool(replacement);

        Assert.Same(replacement, client.GetTool("b_tool"));
        Assert.Null(client.GetTool("missing"));
        Assert.Equal(["a_tool", "b_tool"], client.GetAllToolNames());
    }
}
