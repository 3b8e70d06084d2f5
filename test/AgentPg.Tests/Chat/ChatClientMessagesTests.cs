using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Chat;

/// <summary>The chat client sends one user message per call as the run's prompt: messages it cannot send that way are refused
/// with an error that says why, before any run is created, instead of being dropped or answered with an older prompt.</summary>
public sealed class ChatClientMessagesTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task GetResponseAsync_MessagesItCannotSend_AreRefusedWithoutCreatingARun()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(r => FakeReply.Text("answer to " + r.LastUserText));
        using var chat = h.Client.AsChatClient(agent.Id);
        var first = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")]), "the first answer");
        var session = Guid.Parse(first.ConversationId!);
        var continued = new ChatOptions { ConversationId = first.ConversationId };

        var cases = new (string Case, ChatMessage[] Messages, ChatOptions? Options, string Says)[]
        {
            // The conversation ends with a tool result (Microsoft.Extensions.AI's function invocation sends one back): the last
            // user message is the earlier "hello", which must not be asked again.
            ("ends with a tool result",
                [new(ChatRole.User, "hello"), new(ChatRole.Assistant, [new FunctionCallContent("call_1", "lookup")]),
                 new(ChatRole.Tool, [new FunctionResultContent("call_1", "42")])], continued, "the last message"),
            ("ends with the assistant", [new(ChatRole.User, "hello"), new(ChatRole.Assistant, "hi")], continued, "the last message"),
            // An image or file the prompt cannot carry (the run's prompt is text).
            ("an image",
                [new(ChatRole.User, [new TextContent("What is in this picture?"), new DataContent(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, "image/png")])],
                continued, "DataContent"),
            ("an image link",
                [new(ChatRole.User, [new TextContent("And this one?"), new UriContent(new Uri("https://example.com/cat.png"), "image/png")])],
                continued, "UriContent"),
            // Microsoft.Extensions.AI's way to answer an approval request: AgentPg's decisions go through ApproveToolCallAsync.
            ("an approval response",
                [new(ChatRole.User, [new ToolApprovalResponseContent("0f8fad5b-d9cb-469f-a165-70867728950e", true,
                    new FunctionCallContent("0f8fad5b-d9cb-469f-a165-70867728950e", "issue_refund"))])],
                continued, "ApproveToolCallAsync"),
            // A history without a ConversationId: a new session would not hold it, and the model would answer without it.
            ("a history without a conversation id",
                [new(ChatRole.User, "My name is Ann."), new(ChatRole.Assistant, "Hello Ann."), new(ChatRole.User, "What is my name?")],
                null, "ConversationId"),
        };

        foreach (var (name, messages, options, says) in cases)
        {
            var error = await Eventually.WithinAsync(Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync(messages, options)),
                $"the call with {name} to be refused");
            Assert.True(error.Message.Contains(says, StringComparison.Ordinal), $"{name}: {error.Message}");
        }

        Assert.Single((await h.Client.ListRunsAsync(new RunQuery { SessionId = session })).Items);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE agent_id = $1", agent.Id));

        // What it can send still works: system messages around the new user message, and a full history with the session's id.
        var next = await Eventually.WithinAsync(chat.GetResponseAsync(
            [new(ChatRole.User, "hello"), new(ChatRole.Assistant, first.Text), new(ChatRole.System, "Be terse."), new(ChatRole.User, "again")],
            continued), "the answer to the full history");
        Assert.Equal("answer to again", next.Text);
    }
}
