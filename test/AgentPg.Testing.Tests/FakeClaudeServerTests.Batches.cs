using System.Net;
using System.Net.Http.Headers;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Anthropic.Models.Messages.Batches;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    private static readonly DateTimeOffset s_epoch = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public async Task Batches_CreateThenWait_InProgressThenEndedWithResults()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromMilliseconds(30) });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("Summary of A"), FakeReply.Text("Summary of B"));

        var created = await client.Messages.Batches.Create(Batch(("doc-1", "Summarize A"), ("doc-2", "Summarize B")));
        var ended = await Eventually.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID), b => b.ProcessingStatus.Raw() == "ended", "the batch ends");
        var results = await Results(client, created.ID);

        Assert.StartsWith("msgbatch_", created.ID);
        Assert.Equal("in_progress", created.ProcessingStatus.Raw());
        Assert.Equal(2, created.RequestCounts.Processing);
        Assert.Null(created.EndedAt);
        Assert.Null(created.ResultsUrl);
        Assert.Equal(created.CreatedAt + TimeSpan.FromHours(24), created.ExpiresAt);
        Assert.Equal(0, ended.RequestCounts.Processing);
        Assert.Equal(2, ended.RequestCounts.Succeeded);
        Assert.NotNull(ended.EndedAt);
        Assert.Equal($"{claude.BaseUrl}/v1/messages/batches/{created.ID}/results", ended.ResultsUrl);
        Assert.Equal(["doc-1", "doc-2"], results.Select(r => r.CustomID));
        Assert.True(results[0].Result.TryPickSucceeded(out var first));
        Assert.Equal("Summary of A", Sdk.Text(first.Message));
        Assert.True(results[1].Result.TryPickSucceeded(out var second));
        Assert.Equal("Summary of B", Sdk.Text(second.Message));
        Assert.True(first.Message.Usage.InputTokens > 0);
    }

    [Fact]
    public async Task Batches_CreateWithABodyOverMaxBatchRequestBytes_Is413RequestTooLarge_WhileMaxRequestBytesDoesNotApply()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MaxBatchRequestBytes = 20_000, MaxRequestBytes = 5_000 });
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Text("fits"));

        var error = await Assert.ThrowsAsync<AnthropicContentTooLargeException>(() => client.Messages.Batches.Create(Batch(("doc-1", new string('x', 25_000)))));
        var created = await client.Messages.Batches.Create(Batch(("doc-1", new string('x', 10_000))));

        Assert.Equal(413, (int)error.StatusCode);
        Assert.Equal("request_too_large", error.Type!.Raw());
        Assert.Equal("in_progress", created.ProcessingStatus.Raw());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MaxBatchRequestBytes = -1 }));
    }

    [Fact]
    public async Task ForgetBatch_InProgress_EveryLaterRequestForItIsNotFound()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromHours(1) });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("never seen"));
        var created = await client.Messages.Batches.Create(Batch(("doc-1", "Summarize A")));

        Assert.True(claude.ForgetBatch(created.ID));

        Assert.False(claude.ForgetBatch(created.ID));
        Assert.False(claude.ForgetBatch("msgbatch_unknown"));
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Batches.Retrieve(created.ID));
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Batches.Cancel(created.ID));
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => Results(client, created.ID));
    }

    [Fact]
    public async Task Batches_RequestCounts_StayProcessingUntilTheWholeBatchEnds()
    {
        var clock = new ManualTimeProvider(s_epoch);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { TimeProvider = clock, BatchProcessingDelay = TimeSpan.FromSeconds(10) });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("fast") with { Delay = TimeSpan.FromSeconds(1) }, FakeReply.Text("slow") with { Delay = TimeSpan.FromMinutes(5) });

        var created = await client.Messages.Batches.Create(Batch(("fast", "a"), ("slow", "b")));
        clock.Advance(TimeSpan.FromMinutes(1));
        var halfway = await client.Messages.Batches.Retrieve(created.ID);
        await Assert.ThrowsAsync<AnthropicBadRequestException>(() => Results(client, created.ID));
        clock.Advance(TimeSpan.FromMinutes(5));
        var ended = await client.Messages.Batches.Retrieve(created.ID);

        Assert.Equal(s_epoch, created.CreatedAt);
        Assert.Equal("in_progress", halfway.ProcessingStatus.Raw());
        Assert.Equal(2, halfway.RequestCounts.Processing);
        Assert.Equal(0, halfway.RequestCounts.Succeeded);
        Assert.Equal("ended", ended.ProcessingStatus.Raw());
        Assert.Equal(2, ended.RequestCounts.Succeeded);
        Assert.Equal(s_epoch + TimeSpan.FromMinutes(5), ended.EndedAt);
    }

    [Fact]
    public async Task Batches_Results_CoverEveryResultTypeAndCanLeaveALineOut()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.Zero });
        using var client = claude.CreateClient();
        claude.Enqueue(
            FakeReply.ToolUse("get_weather", new { location = "Paris" }),
            FakeReply.Error(500, "api_error", "Internal server error"),
            FakeReply.Canceled(),
            FakeReply.Expired(),
            FakeReply.MissingResult());

        var created = await client.Messages.Batches.Create(Batch(("ok", "a"), ("bad", "b"), ("canceled", "c"), ("expired", "d"), ("missing", "e"), ("invalid", "")));
        var ended = await Eventually.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID), b => b.ProcessingStatus.Raw() == "ended", "the batch ends");
        var results = (await Results(client, created.ID)).ToDictionary(r => r.CustomID);

        Assert.Equal(["ok", "bad", "canceled", "expired", "invalid"], results.Keys);
        Assert.True(results["ok"].Result.TryPickSucceeded(out var ok));
        Assert.Equal("get_weather", Sdk.ToolUses(ok.Message).Single().Name);
        Assert.Equal("tool_use", ok.Message.StopReason!.Raw());
        Assert.True(results["bad"].Result.TryPickErrored(out var bad));
        Assert.Equal("api_error", bad.Error.Error.Type.Raw());
        Assert.Equal("Internal server error", bad.Error.Error.Message);
        Assert.Equal("canceled", results["canceled"].Result.Type.Raw());
        Assert.Equal("expired", results["expired"].Result.Type.Raw());
        Assert.True(results["invalid"].Result.TryPickErrored(out var invalid));
        Assert.Equal("invalid_request_error", invalid.Error.Error.Type.Raw());
        Assert.StartsWith("messages.0: all messages must have non-empty content", invalid.Error.Error.Message);
        Assert.Equal((2, 2, 1, 1), ((int)ended.RequestCounts.Succeeded, (int)ended.RequestCounts.Errored, (int)ended.RequestCounts.Canceled, (int)ended.RequestCounts.Expired));
        Assert.Equal(0, claude.PendingReplyCount);
    }

    [Fact]
    public async Task Batches_UnscriptedRequest_GetsAnErroredResultSayingSo()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.Zero });
        using var client = claude.CreateClient();

        var created = await client.Messages.Batches.Create(Batch(("lonely", "Hello?")));
        await Eventually.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID), b => b.ProcessingStatus.Raw() == "ended", "the batch ends");
        var result = Assert.Single(await Results(client, created.ID));

        Assert.True(result.Result.TryPickErrored(out var errored));
        Assert.Contains("no scripted reply for batch request 'lonely'", errored.Error.Error.Message);
    }

    [Fact]
    public async Task Batches_ResponderAndQueue_AreAppliedInRequestOrderAtCreation()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.Zero });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("queued"));
        claude.Respond(r => FakeReply.Text($"{r.BatchCustomId}: {r.LastUserText}"));

        var created = await client.Messages.Batches.Create(Batch(("r1", "one"), ("r2", "two"), ("r3", "three")));
        claude.Respond(_ => FakeReply.Text("too late"));
        await Eventually.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID), b => b.ProcessingStatus.Raw() == "ended", "the batch ends");
        var results = await Results(client, created.ID);

        Assert.Equal(["queued", "r2: two", "r3: three"], results.Select(r => r.Result.TryPickSucceeded(out var s) ? Sdk.Text(s.Message) : "?"));
    }

    [Fact]
    public async Task Batches_CancelWhileInProgress_CancelingThenEndedWithCanceledResults()
    {
        var clock = new ManualTimeProvider(s_epoch);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { TimeProvider = clock, BatchCancelDelay = TimeSpan.FromSeconds(2) });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("done early") with { Delay = TimeSpan.FromSeconds(1) }, FakeReply.Text("never") with { Delay = Timeout.InfiniteTimeSpan });

        var created = await client.Messages.Batches.Create(Batch(("early", "a"), ("stuck", "b")));
        clock.Advance(TimeSpan.FromMinutes(1));
        var stillRunning = await client.Messages.Batches.Retrieve(created.ID);
        var canceling = await client.Messages.Batches.Cancel(created.ID);
        await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Batches.Delete(created.ID));
        clock.Advance(TimeSpan.FromSeconds(2));
        var ended = await client.Messages.Batches.Retrieve(created.ID);
        var results = (await Results(client, created.ID)).ToDictionary(r => r.CustomID);

        Assert.Equal("in_progress", stillRunning.ProcessingStatus.Raw());
        Assert.Equal("canceling", canceling.ProcessingStatus.Raw());
        Assert.Equal(s_epoch + TimeSpan.FromMinutes(1), canceling.CancelInitiatedAt);
        Assert.Equal(2, canceling.RequestCounts.Processing);
        Assert.Equal("ended", ended.ProcessingStatus.Raw());
        Assert.Equal(s_epoch + TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(2), ended.EndedAt);
        Assert.Equal((1, 1), ((int)ended.RequestCounts.Succeeded, (int)ended.RequestCounts.Canceled));
        Assert.True(results["early"].Result.TryPickSucceeded(out _));
        Assert.Equal("canceled", results["stuck"].Result.Type.Raw());
    }

    [Fact]
    public async Task Batches_NeverEndingBatch_ExpiresAfter24Hours()
    {
        var clock = new ManualTimeProvider(s_epoch);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { TimeProvider = clock, BatchProcessingDelay = Timeout.InfiniteTimeSpan });
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("unreachable"));

        var created = await client.Messages.Batches.Create(Batch(("a", "x"), ("b", "y")));
        clock.Advance(TimeSpan.FromHours(23));
        var running = await client.Messages.Batches.Retrieve(created.ID);
        clock.Advance(TimeSpan.FromHours(2));
        var expired = await client.Messages.Batches.Retrieve(created.ID);
        var results = await Results(client, created.ID);

        Assert.Equal("in_progress", running.ProcessingStatus.Raw());
        Assert.Equal("ended", expired.ProcessingStatus.Raw());
        Assert.Equal(created.ExpiresAt, expired.EndedAt);
        Assert.Equal(2, expired.RequestCounts.Expired);
        Assert.All(results, r => Assert.Equal("expired", r.Result.Type.Raw()));
    }

    [Fact]
    public async Task Batches_ListWithLimit_PagesNewestFirst()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("x"));
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await client.Messages.Batches.Create(Batch(($"r{i}", "hi")))).ID);
        }

        var firstPage = await client.Messages.Batches.List(new BatchListParams { Limit = 2 });
        var secondPage = await firstPage.Next();
        var backwards = await client.Messages.Batches.List(new BatchListParams { Limit = 1, BeforeID = ids[0] });
        var all = await client.Messages.Batches.List();

        Assert.Equal([ids[2], ids[1]], firstPage.Items.Select(b => b.ID));
        Assert.True(firstPage.HasNext());
        Assert.Equal([ids[0]], secondPage.Items.Select(b => b.ID));
        Assert.False(secondPage.HasNext());
        Assert.Equal([ids[1]], backwards.Items.Select(b => b.ID));
        Assert.Equal([ids[2], ids[1], ids[0]], all.Items.Select(b => b.ID));
        Assert.Equal("limit=2&after_id=" + ids[1], claude.Requests.Last(r => r.Query.ContainsKey("after_id")).QueryString.TrimStart('?'));
    }

    [Fact]
    public async Task Batches_ListPage_ReportsHasMoreFirstIdAndLastId()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(_ => FakeReply.Text("x"));
        using var client = claude.CreateClient();
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await client.Messages.Batches.Create(Batch(($"r{i}", "hi")))).ID);
        }

        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "k");
        using var page = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"{claude.BaseUrl}/v1/messages/batches?limit=2&after_id={ids[2]}"));
        using var last = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"{claude.BaseUrl}/v1/messages/batches?limit=5&after_id={ids[1]}"));

        Assert.False(page.RootElement.GetProperty("has_more").GetBoolean());
        Assert.Equal(ids[1], page.RootElement.GetProperty("first_id").GetString());
        Assert.Equal(ids[0], page.RootElement.GetProperty("last_id").GetString());
        Assert.Equal(1, last.RootElement.GetProperty("data").GetArrayLength());
        Assert.Equal(HttpStatusCode.BadRequest, (await http.GetAsync($"{claude.BaseUrl}/v1/messages/batches?limit=0")).StatusCode);
    }

    [Fact]
    public async Task Batches_Delete_OnlyAfterTheBatchEnded()
    {
        var clock = new ManualTimeProvider(s_epoch);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { TimeProvider = clock });
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("x"));

        var created = await client.Messages.Batches.Create(Batch(("a", "x")));
        var refused = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Batches.Delete(created.ID));
        clock.Advance(TimeSpan.FromSeconds(1));
        var deleted = await client.Messages.Batches.Delete(created.ID);
        var gone = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Batches.Retrieve(created.ID));

        Assert.Equal("invalid_request_error", refused.Type!.Raw());
        Assert.Equal(created.ID, deleted.ID);
        Assert.Equal("not_found_error", gone.Type!.Raw());
        Assert.Empty((await client.Messages.Batches.List()).Items);
    }

    [Fact]
    public async Task Batches_DuplicateCustomId_IsRejected()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("x"));

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Batches.Create(Batch(("same", "a"), ("same", "b"))));

        Assert.Contains("custom_id", error.ApiMessage);
        Assert.Empty((await client.Messages.Batches.List()).Items);
    }

    private static BatchCreateParams Batch(params (string CustomId, string Prompt)[] requests) => new()
    {
        Requests = requests.Select(r => new Request
        {
            CustomID = r.CustomId,
            Params = new Params { Model = Sdk.Model, MaxTokens = 512, Messages = [new UserMessageParam(r.Prompt)] },
        }).ToList(),
    };

    private static async Task<List<MessageBatchIndividualResponse>> Results(Anthropic.AnthropicClient client, string id)
    {
        var results = new List<MessageBatchIndividualResponse>();
        await foreach (var line in client.Messages.Batches.ResultsStreaming(id))
        {
            results.Add(line);
        }

        return results;
    }
}
