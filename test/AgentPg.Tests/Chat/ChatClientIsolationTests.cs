using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Chat;

/// <summary>A chat client answers with its own agent: a continuation token (caller input, opaque but not secret: it holds the
/// run id) resumes only a run of that agent, and only in the conversation the caller names, so an application that checks the
/// <see cref="ChatOptions.ConversationId"/> it accepts from a user cannot be led into another agent's or tenant's answer.</summary>
public sealed class ChatClientIsolationTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static async Task<List<ChatResponseUpdate>> StreamAsync(IChatClient chat, IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync(messages, options))
        {
            updates.Add(u);
        }

        return updates;
    }

    [DatabaseFact]
    public async Task ContinuationToken_OfAnotherAgentsRunOrAnotherConversation_IsRefused_ItsOwnResumes()
    {
        await using var h = await Harness.StartAsync(db);
        var mine = await h.AgentAsync();
        var theirs = await h.AgentAsync();
        h.Claude.Respond(r => FakeReply.Text($"the answer to '{r.LastUserText}'"));
        var web = await h.AddClientAsync(start: false);
        using var myChat = web.AsChatClient(mine.Id);

        // Another tenant's conversation with its own agent; its first update's token names that run.
        var theirUpdates = await Eventually.WithinAsync(StreamAsync(web.AsChatClient(theirs.Id), [new ChatMessage(ChatRole.User, "their secret")]),
            "their answer");
        var theirToken = theirUpdates[0].ContinuationToken!;
        var ofAnotherAgent = await Assert.ThrowsAsync<ArgumentException>(
            () => StreamAsync(myChat, [], new ChatOptions { ContinuationToken = theirToken }));
        Assert.Contains("another agent", ofAnotherAgent.Message, StringComparison.Ordinal);

        // Two conversations with my agent: a token resumes only with its own conversation id (or none).
        var first = await Eventually.WithinAsync(StreamAsync(myChat, [new ChatMessage(ChatRole.User, "first")]), "the first answer");
        var second = await Eventually.WithinAsync(StreamAsync(myChat, [new ChatMessage(ChatRole.User, "second")]), "the second answer");
        Assert.NotEqual(first[0].ConversationId, second[0].ConversationId);
        var ofAnotherConversation = await Assert.ThrowsAsync<ArgumentException>(() => StreamAsync(myChat, [],
            new ChatOptions { ContinuationToken = first[0].ContinuationToken, ConversationId = second[0].ConversationId }));
        Assert.Contains("another conversation", ofAnotherConversation.Message, StringComparison.Ordinal);
        var notASession = await Assert.ThrowsAsync<ArgumentException>(() => StreamAsync(myChat, [],
            new ChatOptions { ContinuationToken = first[0].ContinuationToken, ConversationId = "not-a-session" }));
        Assert.Contains("not an AgentPg session id", notASession.Message, StringComparison.Ordinal);

        var resumed = await Eventually.WithinAsync(StreamAsync(myChat, [],
            new ChatOptions { ContinuationToken = first[0].ContinuationToken, ConversationId = first[0].ConversationId }), "the resumed answer");
        Assert.Equal("the answer to 'first'", string.Concat(first.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, resumed[^1].FinishReason);
        Assert.All(resumed, u => Assert.Equal(first[0].ConversationId, u.ConversationId));
        Assert.DoesNotContain(resumed, u => u.Text.Contains("secret", StringComparison.Ordinal));
    }
}
