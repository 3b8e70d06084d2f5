using System.Collections.Concurrent;
using System.ComponentModel;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Runs;

/// <summary>Structured outputs: an agent's or a run's JSON schema is sent as <c>output_config.format</c> on every model call of
/// the run (streaming and batch, after tool rounds, in delegate runs), stored as written, and the answer is read with
/// <see cref="Response.Deserialize{T}"/>; through the chat client, <c>GetResponseAsync&lt;T&gt;</c> does the same.</summary>
public sealed class StructuredOutputTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    public sealed record Invoice([property: Description("Who pays")] string Customer, decimal Total, DateOnly DueDate, IReadOnlyList<string> Lines);

    // Written by hand, properties in an order jsonb would not keep (it sorts keys by length): "reasoning" before "answer".
    private const string ReasonedSchema = """
        {"type":"object","properties":{"reasoning":{"type":"string"},"answer":{"type":"string"}},"required":["reasoning","answer"],"additionalProperties":false}
        """;

    private static string? FormatSent(FakeRequest request)
        => request.Body.TryGetProperty("output_config", out var config) ? config.GetProperty("format").GetRawText() : null;

    [DatabaseFact]
    public async Task AgentSchema_IsSentOnEveryModelCallOfTheRun_AndTheAnswerDeserializes()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("lookup", (_, _, _) => Task.FromResult("ACME owes 12.50")));
        var schema = StructuredOutput.SchemaFor<Invoice>();
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], OutputSchema = schema });
        var sent = new ConcurrentQueue<string?>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue(FormatSent(r));
            return r.ToolResults.Count == 0
                ? FakeReply.ToolUse("lookup", new { })
                : FakeReply.Text("""{"customer":"ACME","total":12.50,"dueDate":"2026-12-31","lines":["widget"]}""");
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "read the invoice");

        var invoice = response.Deserialize<Invoice>()!;
        Assert.Equal(("ACME", 12.50m, new DateOnly(2026, 12, 31)), (invoice.Customer, invoice.Total, invoice.DueDate));
        Assert.Equal(["widget"], invoice.Lines);
        // The tool round and the answer (a call retried under load is one more, with the same schema).
        Assert.True(sent.Count >= 2, $"{sent.Count} model calls");
        var expected = $$"""{"type":"json_schema","schema":{{schema.GetRawText()}}}""";
        Assert.All(sent, format => Assert.Equal(expected, format));
        // The schema a type gives is one Claude accepts: closed objects, every property required, descriptions kept.
        Assert.False(schema.GetProperty("additionalProperties").GetBoolean());
        Assert.Equal(["customer", "total", "dueDate", "lines"], schema.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("Who pays", schema.GetProperty("properties").GetProperty("customer").GetProperty("description").GetString());
        Assert.Equal(schema.GetRawText(), (await h.Client.GetAgentByIdAsync(agent.Id)).OutputSchema!.Value.GetRawText());
    }

    [DatabaseFact]
    public async Task RunSchema_TakesThePlaceOfTheAgents_IsStoredAsWritten_AndOtherRunsKeepTheAgents()
    {
        await using var h = await Harness.StartAsync(db);
        var agentSchema = StructuredOutput.SchemaFor<Invoice>();
        var agent = await h.AgentAsync(a => a with { OutputSchema = agentSchema });
        var sent = new ConcurrentQueue<(string Prompt, string? Format)>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue((r.LastUserText, FormatSent(r)));
            return FakeReply.Text("""{"reasoning":"because","answer":"42"}""");
        });
        var session = await h.Client.NewSessionAsync();
        using var reasoned = JsonDocument.Parse(ReasonedSchema);

        var own = await h.Client.RunFastSyncAsync(session, agent.Id, "with the run's schema", new RunOptions { OutputSchema = reasoned.RootElement });
        await h.Client.RunFastSyncAsync(session, agent.Id, "with the agent's schema");

        Assert.Equal("42", own.Deserialize<JsonElement>().GetProperty("answer").GetString());
        Assert.Equal(
            [("with the run's schema", $$"""{"type":"json_schema","schema":{{ReasonedSchema.Trim()}}}"""),
             ("with the agent's schema", $$"""{"type":"json_schema","schema":{{agentSchema.GetRawText()}}}""")],
            sent.Distinct().ToArray());
        Assert.Equal(ReasonedSchema.Trim(), (await h.Client.GetRunAsync(own.RunId)).OutputSchema!.Value.GetRawText());
    }

    [DatabaseFact]
    public async Task AgentWithEffortAndASchema_SendsBothInOneOutputConfig()
    {
        await using var h = await Harness.StartAsync(db);
        var schema = StructuredOutput.SchemaFor<Invoice>();
        var agent = await h.AgentAsync(a => a with { Effort = AgentEffort.Low, OutputSchema = schema });
        var sent = new ConcurrentQueue<string>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue(r.Body.GetProperty("output_config").GetRawText());
            return FakeReply.Text("""{"customer":"Hooli","total":1,"dueDate":"2027-04-01","lines":[]}""");
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "read it");

        Assert.Equal("Hooli", response.Deserialize<Invoice>()!.Customer);
        Assert.NotEmpty(sent);
        Assert.All(sent, config => Assert.Equal($$$"""{"effort":"low","format":{"type":"json_schema","schema":{{{schema.GetRawText()}}}}}""", config));
    }

    [DatabaseFact]
    public async Task BatchRun_SendsTheSchemaInItsBatchRequests()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { OutputSchema = StructuredOutput.SchemaFor<Invoice>() });
        var sent = new ConcurrentQueue<string?>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue(FormatSent(r));
            return FakeReply.Text("""{"customer":"Initech","total":3,"dueDate":"2027-01-15","lines":[]}""");
        });

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "read it"), "the batch run", s_timeout);

        Assert.Equal("Initech", response.Deserialize<Invoice>()!.Customer);
        Assert.NotEmpty(sent);
        Assert.All(sent, Assert.NotNull);
    }

    [DatabaseFact]
    public async Task DelegateWithASchema_AnswersItsCallerInJson_AndTheCallerSendsNoSchema()
    {
        await using var h = await Harness.StartAsync(db);
        var reader = await h.AgentAsync(a => a with { Name = "invoice_reader", SystemPrompt = "You read invoices.", OutputSchema = StructuredOutput.SchemaFor<Invoice>() });
        var boss = await h.AgentAsync(a => a with { SystemPrompt = "You delegate.", AgentIds = [reader.Id] });
        var sent = new ConcurrentQueue<(string System, string? Format)>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue((r.SystemText, FormatSent(r)));
            return r.SystemText == "You read invoices."
                ? FakeReply.Text("""{"customer":"Globex","total":7,"dueDate":"2027-02-01","lines":["x"]}""")
                : r.ToolResults.Count == 0
                    ? FakeReply.ToolUse("invoice_reader", new { task = "read it" })
                    : FakeReply.Text("The reader said: " + r.ToolResults[0].Content);
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), boss.Id, "who owes what?");

        Assert.Contains("\"customer\":\"Globex\"", response.Text, StringComparison.Ordinal);
        Assert.All(sent.Where(s => s.System == "You delegate."), s => Assert.Null(s.Format));
        Assert.Contains(sent, s => s.System == "You read invoices.");
        Assert.All(sent.Where(s => s.System == "You read invoices."), s => Assert.NotNull(s.Format));
    }

    [DatabaseFact]
    public async Task Deserialize_OfARefusalOrACutOffAnswer_SaysWhyInsteadOfAJsonError()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { OutputSchema = StructuredOutput.SchemaFor<Invoice>() });
        h.Claude.Enqueue(FakeReply.Text("I can't help with that.") with { StopReason = "refusal" });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "something refused");

        var ex = Assert.Throws<InvalidOperationException>(() => response.Deserialize<Invoice>());
        Assert.Contains("stop reason 'refusal'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Claude refused", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task SchemaThatIsNotAJsonObject_IsRefusedWithWhatToFix_AndNothingIsStored()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        using var array = JsonDocument.Parse("""[{"type":"string"}]""");
        var agentError = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { Name = "bad_schema", OutputSchema = array.RootElement }));
        Assert.Contains("AgentDefinition.OutputSchema must be a JSON schema object", agentError.Message, StringComparison.Ordinal);
        Assert.Contains("it is a JSON array", agentError.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await h.Client.ListAgentsAsync(new Dictionary<string, object?>())).Agents.Count(a => a.Name == "bad_schema"));

        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var runError = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RunFastAsync(session, agent.Id, "go", new RunOptions { OutputSchema = default(JsonElement) }));
        Assert.Contains("RunOptions.OutputSchema must be a JSON schema object", runError.Message, StringComparison.Ordinal);
        using var nul = JsonDocument.Parse("""{"type":"object","description":"a\u0000b"}""");
        var nulError = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RunFastAsync(session, agent.Id, "go", new RunOptions { OutputSchema = nul.RootElement }));
        Assert.Contains("RunOptions.OutputSchema", nulError.Message, StringComparison.Ordinal);
        Assert.Empty((await h.Client.ListRunsAsync(new RunQuery { SessionId = session })).Items);
    }

    [DatabaseFact]
    public async Task IdempotentRepeat_WithAnotherSchema_IsAConflict()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        using var reasoned = JsonDocument.Parse(ReasonedSchema);
        var run = await h.Client.RunFastAsync(session, agent.Id, "go", new RunOptions { IdempotencyKey = "k1", OutputSchema = reasoned.RootElement });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastAsync(session, agent.Id, "go",
            new RunOptions { IdempotencyKey = "k1", OutputSchema = StructuredOutput.SchemaFor<Invoice>() }));

        Assert.Equal(AgentPgErrorCode.IdempotencyConflict, ex.Code);
        Assert.Contains("OutputSchema", ex.Message, StringComparison.Ordinal);
        // Not left pending for the workers of the class's other tests, whose fakes have no reply for it.
        await h.Client.CancelRunAsync(run);
    }

    [DatabaseFact]
    public async Task ChatClient_GetResponseAsyncOfT_SendsTheTypesSchema_AndReturnsTheObject()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var sent = new ConcurrentQueue<string?>();
        h.Claude.Respond(r =>
        {
            sent.Enqueue(FormatSent(r));
            return FakeReply.Text("""{"customer":"Umbrella","total":99.5,"dueDate":"2027-03-03","lines":["a","b"]}""");
        });
        using var chat = h.Client.AsChatClient(agent.Id);

        var response = await chat.GetResponseAsync<Invoice>("read the invoice");

        Assert.Equal("Umbrella", response.Result.Customer);
        Assert.Equal(99.5m, response.Result.Total);
        Assert.NotEmpty(sent);
        Assert.All(sent, format => Assert.Contains("\"json_schema\"", format, StringComparison.Ordinal));
    }
}
