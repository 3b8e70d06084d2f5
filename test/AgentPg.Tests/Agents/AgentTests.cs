using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Agents;

public sealed class AgentTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private readonly AgentPgClient _client = db.CreateClient();

    private static AgentDefinition Agent(string? name = null, IReadOnlyDictionary<string, object?>? metadata = null) => new()
    {
        Name = name ?? "agent_" + Guid.NewGuid().ToString("N")[..8],
        Model = "claude-sonnet-4-5",
        Description = "Answers questions",
        SystemPrompt = "Be brief.",
        Metadata = metadata ?? new Dictionary<string, object?> { ["tenant"] = "acme" },
    };

    [DatabaseFact]
    public async Task CreateAgentAsync_ValidDefinition_StoresEveryField()
    {
        var definition = Agent() with
        {
            Tools = ["get_weather", "calculator"],
            MaxTokens = 1024,
            Temperature = 0.25,
            TopK = 40,
            TopP = 0.5,
            Config = new Dictionary<string, object?> { ["extended_context"] = true, ["limits"] = new Dictionary<string, object?> { ["n"] = 3 } },
        };

        var created = await _client.CreateAgentAsync(definition);
        var read = await _client.GetAgentByIdAsync(created.Id);

        Assert.NotEqual(Guid.Empty, created.Id);
        Assert.NotEqual(default, created.CreatedAt);
        Assert.Equal(definition.Name, read.Name);
        Assert.Equal("Answers questions", read.Description);
        Assert.Equal("claude-sonnet-4-5", read.Model);
        Assert.Equal("Be brief.", read.SystemPrompt);
        Assert.Equal(["get_weather", "calculator"], read.Tools);
        Assert.Equal(1024, read.MaxTokens);
        Assert.Equal(0.25, read.Temperature!.Value, 5);
        Assert.Equal(40, read.TopK);
        Assert.Equal(0.5, read.TopP!.Value, 5);
        Assert.Equal("acme", read.Metadata["tenant"]);
        Assert.Equal(true, read.Config["extended_context"]);
        Assert.Equal(3L, ((Dictionary<string, object?>)read.Config["limits"]!)["n"]);
        Assert.Empty(read.AgentIds);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_NullToolsAndEmptyTools_AreKeptDistinct()
    {
        var all = await _client.CreateAgentAsync(Agent() with { Tools = null });
        var none = await _client.CreateAgentAsync(Agent() with { Tools = [] });

        Assert.Null((await _client.GetAgentByIdAsync(all.Id)).Tools);
        Assert.Equal([], (await _client.GetAgentByIdAsync(none.Id)).Tools);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_NoMetadata_StoresAnEmptyJsonObjectNeverNull()
    {
        var created = await _client.CreateAgentAsync(Agent() with { Metadata = new Dictionary<string, object?>() });

        Assert.Equal("{}", await db.ScalarAsync<string>("SELECT metadata::text FROM {schema}.agentpg_agents WHERE id = $1", created.Id));
        Assert.Equal("{}", await db.ScalarAsync<string>("SELECT config::text FROM {schema}.agentpg_agents WHERE id = $1", created.Id));
    }

    [DatabaseTheory]
    [InlineData("", "Name is required")]
    [InlineData("   ", "Name is required")]
    public async Task CreateAgentAsync_BlankName_ThrowsNamingTheField(string name, string expected)
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.CreateAgentAsync(Agent() with { Name = name }));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_OverLongName_Throws()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.CreateAgentAsync(Agent(new string('a', 256))));
        Assert.Contains("256 characters", ex.Message, StringComparison.Ordinal);
        await _client.CreateAgentAsync(Agent(new string('b', 255)));
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_InvalidFields_NameEachField()
    {
        async Task Expect(AgentDefinition d, string field)
        {
            var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.CreateAgentAsync(d));
            Assert.Contains(field, ex.Message, StringComparison.Ordinal);
        }

        await Expect(Agent() with { Model = "" }, "Model");
        await Expect(Agent() with { MaxTokens = 0 }, "MaxTokens");
        await Expect(Agent() with { Temperature = 1.5 }, "Temperature");
        await Expect(Agent() with { TopP = -0.1 }, "TopP");
        await Expect(Agent() with { TopK = 0 }, "TopK");
        await Expect(Agent() with { Tools = ["get weather"] }, "get weather");
        await Expect(Agent() with { Tools = ["a", "a"] }, "more than once");
        await Expect(Agent() with { AgentIds = [Guid.Empty] }, "AgentIds");
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_DuplicateNameAndMetadata_ThrowsAgentAlreadyExists()
    {
        var definition = Agent();
        await _client.CreateAgentAsync(definition);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.CreateAgentAsync(definition with { Description = "other" }));

        Assert.Equal(AgentPgErrorCode.AgentAlreadyExists, ex.Code);
        Assert.Contains("GetOrCreateAgentAsync", ex.Message, StringComparison.Ordinal);
        // Same name, other tenant: allowed.
        await _client.CreateAgentAsync(definition with { Metadata = new Dictionary<string, object?> { ["tenant"] = "globex" } });
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_DelegateNameIsNotAToolName_IsRejectedWithARenameHint()
    {
        var worker = await _client.CreateAgentAsync(Agent("Research Assistant"));

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.CreateAgentAsync(Agent() with { AgentIds = [worker.Id] }));

        Assert.Contains("Research Assistant", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Research_Assistant", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_DelegateCollidesWithATool_IsRejected()
    {
        var worker = await _client.CreateAgentAsync(Agent("lookup_" + Guid.NewGuid().ToString("N")[..6]));

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.CreateAgentAsync(Agent() with { Tools = [worker.Name], AgentIds = [worker.Id] }));

        Assert.Contains("both named", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_UnknownDelegate_ThrowsAgentNotFound()
    {
        var missing = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.CreateAgentAsync(Agent() with { AgentIds = [missing] }));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
        Assert.Contains(missing.ToString(), ex.Message, StringComparison.Ordinal);
    }

    // Before: stored, and every delegation of the agent to itself refused at run time as a cycle.
    [DatabaseFact]
    public async Task UpdateAgentAsync_AgentListsItselfAsADelegate_IsRejectedAndNothingChanges()
    {
        var helper = await _client.CreateAgentAsync(Agent());
        var agent = await _client.CreateAgentAsync(Agent() with { AgentIds = [helper.Id] });

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.UpdateAgentAsync(agent with { AgentIds = [helper.Id, agent.Id], SystemPrompt = "changed" }));

        Assert.Contains($"lists the agent itself ({agent.Id}); an agent cannot delegate to itself", ex.Message, StringComparison.Ordinal);
        Assert.Equal("definition", ex.ParamName);
        var stored = await _client.GetAgentByIdAsync(agent.Id);
        Assert.Equal([helper.Id], stored.AgentIds);
        Assert.Equal(agent.SystemPrompt, stored.SystemPrompt);
    }

    [DatabaseFact]
    public async Task UpdateAgentAsync_RenamingADelegateToItsFellowDelegatesName_IsRejectedAndNothingChanges()
    {
        var first = await _client.CreateAgentAsync(Agent());
        var second = await _client.CreateAgentAsync(Agent());
        var boss = await _client.CreateAgentAsync(Agent() with { AgentIds = [first.Id, second.Id] });

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.UpdateAgentAsync(first with { Name = second.Name }));

        Assert.Contains($"Agent '{boss.Name}' has two delegate agents named '{second.Name}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(first.Name, (await _client.GetAgentByIdAsync(first.Id)).Name);
    }

    [DatabaseFact]
    public async Task CreateAgentAsync_ValidDelegates_AreStored()
    {
        var a = await _client.CreateAgentAsync(Agent());
        var b = await _client.CreateAgentAsync(Agent());

        var lead = await _client.CreateAgentAsync(Agent() with { AgentIds = [a.Id, b.Id] });

        Assert.Equal([a.Id, b.Id], (await _client.GetAgentByIdAsync(lead.Id)).AgentIds);
    }

    [DatabaseFact]
    public async Task GetOrCreateAgentAsync_Existing_ReturnsItUnchanged()
    {
        var original = await _client.CreateAgentAsync(Agent());

        var again = await _client.GetOrCreateAgentAsync(original with { Id = Guid.Empty, SystemPrompt = "Changed prompt", Model = "claude-opus-4-6" });

        Assert.Equal(original.Id, again.Id);
        Assert.Equal("Be brief.", again.SystemPrompt);
        Assert.Equal("claude-sonnet-4-5", (await _client.GetAgentByIdAsync(original.Id)).Model);
    }

    [DatabaseFact]
    public async Task GetOrCreateAgentAsync_Missing_CreatesOnceUnderConcurrency()
    {
        var definition = Agent();

        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => _client.GetOrCreateAgentAsync(definition))));

        Assert.Single(results.Select(r => r.Id).Distinct());
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_agents WHERE name = $1", definition.Name));
    }

    [DatabaseFact]
    public async Task UpdateAgentAsync_ChangesEveryField()
    {
        var created = await _client.CreateAgentAsync(Agent());

        await _client.UpdateAgentAsync(created with { SystemPrompt = "New prompt", Tools = ["x"], MaxTokens = 99, Description = null });

        var read = await _client.GetAgentByIdAsync(created.Id);
        Assert.Equal("New prompt", read.SystemPrompt);
        Assert.Equal(["x"], read.Tools);
        Assert.Equal(99, read.MaxTokens);
        Assert.Null(read.Description);
        Assert.True(read.UpdatedAt >= created.UpdatedAt);
    }

    [DatabaseFact]
    public async Task GetAgentByNameAsync_NearMiss_NamesTheCloseAgentsInTheError()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        await _client.CreateAgentAsync(Agent("researcher_" + suffix));
        await _client.CreateAgentAsync(Agent("research_" + suffix));

        var wrongCase = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByNameAsync("Researcher_" + suffix));
        var typo = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByNameAsync("reseacher_" + suffix));
        var unrelated = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByNameAsync("writer_" + suffix));

        Assert.Equal(AgentPgErrorCode.AgentNotFound, wrongCase.Code);
        Assert.EndsWith($"Did you mean 'researcher_{suffix}' or 'research_{suffix}'? Agent names are case-sensitive.", wrongCase.Message, StringComparison.Ordinal);
        Assert.EndsWith($"Did you mean 'researcher_{suffix}'?", typo.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Did you mean", unrelated.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task UpdateAgentAsync_UnknownOrEmptyId_Throws()
    {
        var missing = await Assert.ThrowsAsync<AgentPgException>(() => _client.UpdateAgentAsync(Agent() with { Id = Guid.NewGuid() }));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, missing.Code);
        await Assert.ThrowsAsync<ArgumentException>(() => _client.UpdateAgentAsync(Agent()));
    }

    [DatabaseFact]
    public async Task UpdateAgentAsync_RenamingADelegateToAnInvalidToolName_IsRejected()
    {
        var worker = await _client.CreateAgentAsync(Agent());
        await _client.CreateAgentAsync(Agent() with { AgentIds = [worker.Id] });

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.UpdateAgentAsync(worker with { Name = "Not a tool name" }));

        Assert.Contains("Not a tool name", ex.Message, StringComparison.Ordinal);
        Assert.Equal(worker.Name, (await _client.GetAgentByIdAsync(worker.Id)).Name);
    }

    [DatabaseFact]
    public async Task UpdateAgentAsync_IntoAnExistingNameAndMetadata_ThrowsAgentAlreadyExists()
    {
        var a = await _client.CreateAgentAsync(Agent());
        var b = await _client.CreateAgentAsync(Agent());

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.UpdateAgentAsync(b with { Name = a.Name }));

        Assert.Equal(AgentPgErrorCode.AgentAlreadyExists, ex.Code);
    }

    [DatabaseFact]
    public async Task DeleteAgentAsync_Unused_Deletes()
    {
        var created = await _client.CreateAgentAsync(Agent());

        await _client.DeleteAgentAsync(created.Id);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByIdAsync(created.Id));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task DeleteAgentAsync_ReferencedByARun_ThrowsAgentInUseAndKeepsTheAgent()
    {
        var created = await _client.CreateAgentAsync(Agent());
        var session = await _client.NewSessionAsync();
        await db.Seed.RunAsync(session, created.Id, mode: "batch");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.DeleteAgentAsync(created.Id));

        Assert.Equal(AgentPgErrorCode.AgentInUse, ex.Code);
        Assert.Contains("1 runs", ex.Message, StringComparison.Ordinal);
        Assert.Equal(created.Name, (await _client.GetAgentByIdAsync(created.Id)).Name);
    }

    [DatabaseFact]
    public async Task DeleteAgentAsync_ADelegateOfAnotherAgent_ThrowsAgentInUseNamingItAndKeepsBoth()
    {
        // Before: deleted, leaving the delegating agent's AgentIds pointing at nothing; its runs silently lost the delegate
        // and its next UpdateAgentAsync failed with "lists delegate agent … but no agent has that id".
        var helper = await _client.CreateAgentAsync(Agent());
        var boss = await _client.CreateAgentAsync(Agent() with { AgentIds = [helper.Id] });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.DeleteAgentAsync(helper.Id));

        Assert.Equal(AgentPgErrorCode.AgentInUse, ex.Code);
        Assert.Contains($"agent '{boss.Name}' delegates to it", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Remove it from their AgentIds (UpdateAgentAsync) first", ex.Message, StringComparison.Ordinal);
        Assert.Equal(helper.Name, (await _client.GetAgentByIdAsync(helper.Id)).Name);
        Assert.Equal([helper.Id], (await _client.GetAgentByIdAsync(boss.Id)).AgentIds);

        await _client.UpdateAgentAsync(boss with { AgentIds = [] });
        await _client.DeleteAgentAsync(helper.Id);
        await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByIdAsync(helper.Id));
    }

    // Before: the delete read "no delegators", the update listing the agent committed, and then the delete went through, leaving
    // the update's AgentIds pointing at nothing. The test holds a KEY SHARE lock on the agent (as a run being created for it
    // would) so the delete is stopped between the two, and lets the update run in that window.
    [DatabaseFact]
    public async Task DeleteAgentAsync_WhileAnUpdateStartsDelegatingToIt_SeesTheDelegatorAndKeepsTheAgent()
    {
        var helper = await _client.CreateAgentAsync(Agent());
        var boss = await _client.CreateAgentAsync(Agent());
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var holder = await connection.BeginTransactionAsync();
        await using (var command = new Npgsql.NpgsqlCommand($"SELECT id FROM \"{db.Schema}\".agentpg_agents WHERE id = $1 FOR KEY SHARE", connection, holder))
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = helper.Id });
            await command.ExecuteScalarAsync();
        }

        var delete = _client.DeleteAgentAsync(helper.Id);
        await WaitForLockWaitAsync(delete, "the delete");
        await _client.UpdateAgentAsync(boss with { AgentIds = [helper.Id] });
        await holder.RollbackAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(delete, "the delete"));
        Assert.Equal(AgentPgErrorCode.AgentInUse, ex.Code);
        Assert.Contains($"agent '{boss.Name}' delegates to it", ex.Message, StringComparison.Ordinal);
        Assert.Equal(helper.Name, (await _client.GetAgentByIdAsync(helper.Id)).Name);
        Assert.Equal([helper.Id], (await _client.GetAgentByIdAsync(boss.Id)).AgentIds);
    }

    // Before: the update read the delegate while an uncommitted delete of it was under way, and stored an AgentIds entry that
    // pointed at nothing once the delete committed. Now it waits for the delete and refuses the missing delegate.
    [DatabaseFact]
    public async Task UpdateAgentAsync_ListingAnAgentBeingDeleted_WaitsAndThrowsAgentNotFound()
    {
        var helper = await _client.CreateAgentAsync(Agent());
        var boss = await _client.CreateAgentAsync(Agent() with { SystemPrompt = "before" });
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var deleter = await connection.BeginTransactionAsync();
        await using (var command = new Npgsql.NpgsqlCommand($"DELETE FROM \"{db.Schema}\".agentpg_agents WHERE id = $1", connection, deleter))
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = helper.Id });
            Assert.Equal(1, await command.ExecuteNonQueryAsync());
        }

        var update = _client.UpdateAgentAsync(boss with { AgentIds = [helper.Id], SystemPrompt = "after" });
        await WaitForLockWaitAsync(update, "the update");
        await deleter.CommitAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(update, "the update"));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
        Assert.Contains(helper.Id.ToString(), ex.Message, StringComparison.Ordinal);
        var stored = await _client.GetAgentByIdAsync(boss.Id);
        Assert.Empty(stored.AgentIds);
        Assert.Equal("before", stored.SystemPrompt);
    }

    private async Task WaitForLockWaitAsync(Task operation, string what)
    {
        await Eventually.TrueAsync(
            async () => operation.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                $"%{db.Schema}%agentpg_agents%") > 0,
            $"{what} finished or waits for the agent's row lock");
        Assert.False(operation.IsCompleted, $"{what} did not wait for the row lock the test holds");
    }

    [DatabaseFact]
    public async Task DeleteAgentAsync_UnknownId_ThrowsAgentNotFound()
    {
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.DeleteAgentAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task GetAgentByNameAsync_FiltersByMetadataContainment()
    {
        var name = "support_" + Guid.NewGuid().ToString("N")[..6];
        var acme = await _client.CreateAgentAsync(Agent(name, new Dictionary<string, object?> { ["tenant"] = "acme", ["tier"] = "gold" }));
        var globex = await _client.CreateAgentAsync(Agent(name, new Dictionary<string, object?> { ["tenant"] = "globex" }));

        Assert.Equal(acme.Id, (await _client.GetAgentByNameAsync(name, new Dictionary<string, object?> { ["tenant"] = "acme" })).Id);
        Assert.Equal(globex.Id, (await _client.GetAgentByNameAsync(name, new Dictionary<string, object?> { ["tenant"] = "globex" })).Id);
        Assert.Equal(acme.Id, (await _client.GetAgentByNameAsync(name)).Id);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetAgentByNameAsync(name, new Dictionary<string, object?> { ["tenant"] = "initech" }));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task ListAgentsAsync_PagesAndCountsByMetadata()
    {
        var tenant = Guid.NewGuid().ToString("N");
        var metadata = new Dictionary<string, object?> { ["tenant"] = tenant };
        foreach (var n in new[] { "c", "a", "b" })
        {
            await _client.CreateAgentAsync(Agent("list_" + n, metadata));
        }

        var page1 = await _client.ListAgentsAsync(metadata, limit: 2);
        var page2 = await _client.ListAgentsAsync(metadata, limit: 2, offset: 2);

        Assert.Equal(3, page1.TotalCount);
        Assert.Equal(["list_a", "list_b"], page1.Agents.Select(a => a.Name));
        Assert.Equal(["list_c"], page2.Agents.Select(a => a.Name));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => _client.ListAgentsAsync(limit: 0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => _client.ListAgentsAsync(offset: -1));
    }
}
