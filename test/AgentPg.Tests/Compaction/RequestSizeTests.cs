using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Compaction;

/// <summary>A session whose images outgrow Claude's 32 MB request limit (HTTP 413, whatever the tokens): the run fails with
/// <c>request_too_large</c> and a message naming the fixes, or, with automatic compaction, old tool outputs are pruned and
/// the run goes on; the same in batch mode, whether the batch's creation is refused (over 256 MB) or its request errored.
/// The fake refuses a body over its limit with the API's 413; the limit is 1 MB here instead of the real 32 MB (and 256 MB),
/// and the photos are scaled down with it (the path is the same, without sending 37 MB per request).</summary>
public sealed class RequestSizeTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const long Limit = 1024 * 1024;

    // 150 000 bytes of PNG: 200 000 bytes of base64 in every later request. Five fit under 1 MB, six do not.
    private static readonly byte[] s_photo = MakePng(150_000);

    private static FakeClaudeServerOptions Claude => new() { MaxRequestBytes = Limit, MaxBatchRequestBytes = Limit };

    private sealed class CameraTool : IContentTool
    {
        public string Name => "snap";

        public string Description => "Takes a photo";

        public ToolSchema InputSchema { get; } = new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
            => Task.FromResult(ToolResult.FromContent(new TextContent("a photo"), new DataContent(s_photo, "image/png")));
    }

    [DatabaseFact]
    public async Task ImagesOverTheRequestLimit_WithoutAutoCompaction_FailTheRunWithRequestTooLarge_SayingHowToFixIt()
    {
        await using var h = await Harness.StartAsync(db, Claude, null, start: true, new CameraTool());
        var (agent, session) = await FivePhotosAsync(h);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastSyncAsync(session, agent, "one more"));

        Assert.Equal("request_too_large", ex.Context["error_type"]);
        Assert.Contains("over Claude's size limit of 32 MB", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Request exceeds the maximum allowed number of bytes.", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgOptions.AutoCompaction", ex.Message, StringComparison.Ordinal);
        Assert.Contains("CompactAsync", ex.Message, StringComparison.Ordinal);
        // One refused call: the SDK does not retry a 413 and neither does the engine.
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall && IsOverLimit(r));

        // What the message advises works: the old photos pruned, the session goes on. (The failed run's messages are not part
        // of the conversation: it is the first run's four, the newest of which always stays.)
        var compacted = await h.Client.CompactAsync(session, new CompactionOptions { ProtectedTokens = 0, PreserveLastN = 0 });
        Assert.Equal(1, compacted.MessagesPruned);
        Assert.False(compacted.SummaryCreated);
        var response = await h.Client.RunFastSyncAsync(session, agent, "and now");
        Assert.Equal("seen 1", response.Text);
    }

    [DatabaseFact]
    public async Task ImagesOverTheRequestLimit_WithAutoCompaction_ArePrunedAndTheRunCompletes()
    {
        await using var h = await Harness.StartAsync(db, Claude, o =>
        {
            o.AutoCompaction = true;
            o.Compaction.PreserveLastN = 2;
        }, start: true, new CameraTool());
        var (agent, session) = await FivePhotosAsync(h);

        var response = await h.Client.RunFastSyncAsync(session, agent, "one more");

        // Claude refused the request with six photos once; after the compaction it fits, with the photo of the PreserveLastN
        // (2) newest messages; the first run's five, in one tool_result message, are pruned to their text form.
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall && IsOverLimit(r));
        var last = h.Claude.Requests.Last(r => r.IsMessagesCall);
        Assert.False(IsOverLimit(last));
        Assert.Equal(1, PhotosIn(last));
        Assert.Equal("seen 1", response.Text);
        var compaction = Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        Assert.Equal("request_too_large", compaction.Reason);
        Assert.Equal(1, compaction.MessagesPruned);
        Assert.Equal(0, compaction.MessagesRemoved);
    }

    [DatabaseFact]
    public async Task RequestTooLarge_WhenAutoCompactionFindsNothingToCompact_SaysItWasTried()
    {
        await using var h = await Harness.StartAsync(db, Claude, o => o.AutoCompaction = true);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes."));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello"));

        Assert.Equal("request_too_large", ex.Context["error_type"]);
        Assert.Contains("even after automatic compaction", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Request exceeds the maximum allowed number of bytes.", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ABatchOverTheBatchesLimit_WithoutAutoCompaction_FailsTheRunWithRequestTooLarge()
    {
        await using var h = await Harness.StartAsync(db, Claude, null, start: true, new CameraTool());
        var (agent, session) = await FivePhotosAsync(h);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunSyncAsync(session, agent, "one more"));

        Assert.Equal("request_too_large", ex.Context["error_type"]);
        Assert.Contains("over Claude's size limit of 32 MB per request and 256 MB per message batch", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgOptions.AutoCompaction", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Request exceeds the maximum allowed number of bytes.", ex.Message, StringComparison.Ordinal);
        Assert.Single(h.Claude.Requests, r => IsBatchCreate(r) && IsOverLimit(r));
    }

    [DatabaseFact]
    public async Task ABatchOverTheBatchesLimit_WithAutoCompaction_IsCompactedAndSubmittedAgain()
    {
        await using var h = await Harness.StartAsync(db, Claude, o =>
        {
            o.AutoCompaction = true;
            o.Compaction.PreserveLastN = 2;
        }, start: true, new CameraTool());
        var (agent, session) = await FivePhotosAsync(h);

        var response = await h.Client.RunSyncAsync(session, agent, "one more");

        Assert.Equal("seen 1", response.Text);
        Assert.Single(h.Claude.Requests, r => IsBatchCreate(r) && IsOverLimit(r));
        var last = h.Claude.Requests.Last(r => IsBatchCreate(r));
        Assert.Equal(1, PhotosIn(last.Body!.Value.GetProperty("requests")[0].GetProperty("params")));
        var compaction = Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        Assert.Equal("request_too_large", compaction.Reason);
    }

    [DatabaseFact]
    public async Task ABatchRequestErroredAsTooLarge_WithNothingToCompact_FailsTheRunWithRequestTooLarge()
    {
        await using var h = await Harness.StartAsync(db, Claude, o => o.AutoCompaction = true);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes."));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello"));

        Assert.Equal("request_too_large", ex.Context["error_type"]);
        Assert.Contains("even after automatic compaction", ex.Message, StringComparison.Ordinal);
        Assert.Single(h.Claude.Requests, IsBatchCreate);
    }

    /// <summary>A first run that takes five photos at once (1 000 000 bytes of base64 in the session, under the limit); the
    /// next run's photo takes its second request over it.</summary>
    private static async Task<(Guid Agent, Guid Session)> FivePhotosAsync(Harness h)
    {
        var agent = await h.AgentAsync(a => a with { Tools = ["snap"] });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"seen {PhotosIn(request.Body)}")
            : request.LastUserText == "five photos"
                ? FakeReply.Message([.. Enumerable.Range(0, 5).Select(_ => FakeContentBlock.ToolUse("snap", new { }))])
                : FakeReply.ToolUse("snap", new { }));

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "five photos");

        Assert.Equal("seen 5", response.Text);
        return (agent.Id, session);
    }

    private static bool IsBatchCreate(RecordedRequest request) => request.Method == "POST" && request.Path == "/v1/messages/batches";

    /// <summary>The fake refused the body as over 32 MB (it records no body then).</summary>
    private static bool IsOverLimit(RecordedRequest request) => request.Body is null;

    private static int PhotosIn(RecordedRequest request) => PhotosIn(request.Body!.Value);

    private static int PhotosIn(JsonElement body)
        => body.GetProperty("messages").EnumerateArray()
            .Where(m => m.GetProperty("content").ValueKind == JsonValueKind.Array)
            .SelectMany(m => m.GetProperty("content").EnumerateArray())
            .Where(b => b.GetProperty("type").GetString() == "tool_result" && b.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.Array)
            .SelectMany(b => b.GetProperty("content").EnumerateArray())
            .Count(b => b.GetProperty("type").GetString() == "image");

    private static byte[] MakePng(int length)
    {
        var bytes = new byte[length];
        ReadOnlySpan<byte> signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        signature.CopyTo(bytes);
        new Random(7).NextBytes(bytes.AsSpan(signature.Length));
        return bytes;
    }
}
