using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Tools;

/// <summary>Tools built from a complete JSON Schema: Claude receives it unchanged and the model's input is validated against
/// all of it (review D19); tools can also leave a running instance.</summary>
public sealed class FullJsonSchemaToolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string UnionSchema = """
        {
          "type": "object",
          "properties": {
            "id": { "anyOf": [ { "type": "string", "format": "uuid" }, { "type": "integer", "minimum": 1 } ], "description": "A uuid or a number" },
            "filter": {
              "type": "object",
              "properties": { "kind": { "enum": ["open", "closed", 3] }, "tags": { "type": "array", "items": { "$ref": "#/$defs/tag" } } },
              "additionalProperties": false
            }
          },
          "required": ["id"],
          "additionalProperties": false,
          "$defs": { "tag": { "type": "string", "minLength": 1 } }
        }
        """;

    private static void ScriptOneCall(FakeClaudeServer claude, string tool, object input)
        => claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse(tool, input));

    [DatabaseFact]
    public async Task AnAIFunctionWithAUnionParameter_SendsClaudeItsJsonSchemaUnchanged()
    {
        var function = new SchemaFunction("lookup", UnionSchema);
        await using var h = await Harness.StartAsync(db, null, start: true);
        h.Client.RegisterTool(function);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        ScriptOneCall(h.Claude, "lookup", new { id = 7, filter = new { kind = 3, tags = new[] { "a" } } });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up");

        Assert.Equal("result: found 7 error=False", response.Text);
        var sent = h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("tools")[0].GetProperty("input_schema");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(UnionSchema), JsonNode.Parse(sent.GetRawText())),
            $"Claude received {sent.GetRawText()} instead of the function's schema");
        var stored = await db.ScalarAsync<string>("SELECT input_schema::text FROM {schema}.agentpg_tools WHERE name = 'lookup'");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(UnionSchema), JsonNode.Parse(stored)), $"agentpg_tools holds {stored}");
    }

    [DatabaseTheory]
    [InlineData("""{ "id": true }""", "anyOf")]
    [InlineData("""{ "id": 0 }""", "anyOf")]
    [InlineData("""{ "id": 5, "extra": 1 }""", "additionalProperties")]
    [InlineData("""{ "id": 5, "filter": { "kind": "half" } }""", "enum")]
    [InlineData("""{ "id": 5, "filter": { "tags": [""] } }""", "minLength")]
    public async Task InputThatBreaksAKeywordOutsideTheModelledSubset_IsRejectedBeforeTheCall(string input, string keyword)
    {
        var function = new SchemaFunction("lookup", UnionSchema);
        await using var h = await Harness.StartAsync(db, null, start: true);
        h.Client.RegisterTool(function);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        ScriptOneCall(h.Claude, "lookup", JsonDocument.Parse(input).RootElement);

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up");

        Assert.Equal(0, function.Calls);
        Assert.StartsWith("result: Invalid input for tool 'lookup': ", response.Text, StringComparison.Ordinal);
        Assert.True(response.Text.Contains(keyword, StringComparison.Ordinal), response.Text);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        Assert.Equal(ToolExecutionState.Failed, Assert.Single(response.ToolCalls).State);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT attempt_count::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
    }

    [Fact]
    public void FromJsonSchema_KeepsTheCompleteSchema_AndReadsTheModelledPart()
    {
        var schema = ToolSchema.FromJsonSchema(JsonDocument.Parse(UnionSchema).RootElement);

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(UnionSchema), schema.ToJsonObject()));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(UnionSchema), JsonNode.Parse(schema.ToJson())));
        Assert.Equal(["id"], schema.Required);
        Assert.Null(schema.Properties["id"].Type);
        Assert.Null(new ToolSchema().JsonSchema);
    }

    [Fact]
    public void ASchemaWithKeywordsJsonSchemaDoesNotDefine_IsRegistered_AndItsOtherKeywordsStillValidate()
    {
        // Without $schema, a schema is 2020-12 (MCP says so), where an unknown keyword is an annotation: MCP's x-mcp-header,
        // Pydantic's discriminator, vendors' x-…. Before, JsonSchema.Net's default dialect refused them at registration
        // ("Unknown keywords (x-mcp-header) are disallowed for this dialect"), which failed AddMcpServerAsync for the server.
        var client = db.CreateClient();
        var schema = ToolSchema.FromJsonSchema(JsonDocument.Parse("""
            {
              "type": "object",
              "properties": {
                "region": { "type": "string", "x-mcp-header": "Region", "x-order": 1 },
                "pet": {
                  "oneOf": [
                    { "type": "object", "properties": { "kind": { "const": "cat" } }, "required": ["kind"] },
                    { "type": "object", "properties": { "kind": { "const": "dog" } }, "required": ["kind"] }
                  ],
                  "discriminator": { "propertyName": "kind" }
                }
              },
              "required": ["region"]
            }
            """).RootElement);

        client.RegisterTool(new TestTool("annotated", schema: schema));

        Assert.NotNull(client.GetTool("annotated"));
        Assert.Null(AgentPg.Tools.FullSchemaValidator.Validate("annotated", schema, JsonDocument.Parse("""{ "region": "eu", "pet": { "kind": "cat" } }""").RootElement));
        Assert.NotNull(AgentPg.Tools.FullSchemaValidator.Validate("annotated", schema, JsonDocument.Parse("""{ "region": "eu", "pet": { "kind": "cow" } }""").RootElement));
        Assert.NotNull(AgentPg.Tools.FullSchemaValidator.Validate("annotated", schema, JsonDocument.Parse("""{ "pet": { "kind": "cat" } }""").RootElement));
    }

    [Fact]
    public void ASchemaWhoseRefDoesNotResolve_IsRefusedAtRegistration()
    {
        var client = db.CreateClient();
        var tool = new TestTool("broken_ref", schema: ToolSchema.FromJsonSchema(JsonDocument.Parse(
            """{ "type": "object", "properties": { "a": { "$ref": "#/$defs/missing" } } }""").RootElement));

        var error = Assert.Throws<ArgumentException>(() => client.RegisterTool(tool));

        Assert.Contains("Tool 'broken_ref' has an input schema that cannot be used to validate input", error.Message, StringComparison.Ordinal);
        Assert.Contains("#/$defs/missing", error.Message, StringComparison.Ordinal);
        Assert.Null(client.GetTool("broken_ref"));
    }

    [DatabaseFact]
    public async Task UnregisterTool_RemovesItFromTheRunningInstance_AndFromItsRegistrationInTheDatabase()
    {
        await using var h = await Harness.StartAsync(db, null, start: true, new TestTool("stays"));
        h.Client.RegisterTool(new TestTool("leaves"));
        async Task<long> RegisteredAsync(string tool) => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = $2", h.Client.InstanceId, tool);
        await Eventually.TrueAsync(async () => await RegisteredAsync("leaves") == 1, "the added tool is registered on the instance");

        Assert.True(h.Client.UnregisterTool("leaves"));
        Assert.False(h.Client.UnregisterTool("leaves"));

        Assert.Null(h.Client.GetTool("leaves"));
        Assert.Equal(["stays"], h.Client.GetAllToolNames());
        await Eventually.TrueAsync(async () => await RegisteredAsync("leaves") == 0, "the removed tool's instance registration is deleted");
        Assert.Equal(1, await RegisteredAsync("stays"));

        // Registering it again brings the registration back (the changes are applied in order).
        h.Client.RegisterTool(new TestTool("leaves"));
        h.Client.UnregisterTool("leaves");
        h.Client.RegisterTool(new TestTool("leaves"));
        await Eventually.TrueAsync(async () => await RegisteredAsync("leaves") == 1, "the re-added tool is registered again");
    }

    /// <summary>An AIFunction with a hand-written JSON schema, as a library that generates rich schemas would give.</summary>
    private sealed class SchemaFunction(string name, string schema) : AIFunction
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public override string Name => name;

        public override string Description => "Looks an item up";

        public override JsonElement JsonSchema { get; } = JsonDocument.Parse(schema).RootElement.Clone();

        protected override ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return ValueTask.FromResult<object?>($"found {arguments["id"]}");
        }
    }
}
