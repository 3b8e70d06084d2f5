using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Tools;

/// <summary><see cref="ITool.Strict"/> and <see cref="ITool.EagerInputStreaming"/> reach Claude's tool definitions
/// (<c>strict</c>, <c>eager_input_streaming</c>), the latter only in streaming requests.</summary>
public sealed class ToolDefinitionOptionsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ToolSchema s_fileSchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["path"] = new() { Type = "string" }, ["content"] = new() { Type = "string" } },
        Required = ["path", "content"],
    };

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task StrictAndEagerTools_AreSentWithTheirFlags_EagerOnlyWhenTheRequestStreams(bool streaming)
    {
        var written = new List<string>();
        var writeFile = new TestTool("write_file", (_, input, _) =>
        {
            lock (written)
            {
                written.Add(input.GetProperty("content").GetString()!);
            }

            return Task.FromResult("written");
        }, s_fileSchema)
        { Strict = true, EagerInputStreaming = true };
        var strictOnly = FunctionTool.Create("lookup", "Looks a word up", (string word) => "a word");
        strictOnly.Strict = true;
        await using var h = await Harness.StartAsync(db, configure: null, start: true, writeFile, strictOnly, new TestTool("plain"));
        var agent = await h.AgentAsync(a => a with { Tools = ["write_file", "lookup", "plain"] });
        var requests = new List<FakeRequest>();
        h.Claude.Respond(request =>
        {
            lock (requests)
            {
                requests.Add(request);
            }

            return request.ToolResults.Count > 0
                ? FakeReply.Text("Done.")
                : FakeReply.ToolUse("write_file", new { path = "poem.txt", content = "Roses are red" });
        });
        var session = await h.Client.NewSessionAsync();

        var response = await (streaming
            ? h.Client.RunFastSyncAsync(session, agent.Id, "write a poem")
            : h.Client.RunSyncAsync(session, agent.Id, "write a poem"));

        Assert.Equal("Done.", response.Text);
        Assert.Equal(["Roses are red"], written);
        Assert.Equal(2, requests.Count);
        foreach (var request in requests)
        {
            Assert.Equal(streaming, request.IsStreaming);
            var tools = request.Tools.ToDictionary(t => t.Name);
            Assert.True(tools["write_file"].Strict);
            Assert.Equal(streaming, tools["write_file"].EagerInputStreaming);
            Assert.True(tools["lookup"].Strict);
            Assert.False(tools["lookup"].EagerInputStreaming);
            Assert.False(tools["plain"].Strict);
            Assert.False(tools["plain"].EagerInputStreaming);
            // Tools that ask for neither are sent as before (no false flags in the cached prefix).
            Assert.False(tools["plain"].Json.TryGetProperty("strict", out _));
            Assert.False(tools["plain"].Json.TryGetProperty("eager_input_streaming", out _));
            Assert.Equal(JsonValueKind.True, tools["write_file"].Json.GetProperty("strict").ValueKind);
        }
    }
}
