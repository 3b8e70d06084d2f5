using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>The chat page in a real browser: the answer streams in token by token over server-sent events (the text grows
/// while the run is still streaming), tool calls show as they happen, Stop cancels, Regenerate answers again.</summary>
public sealed class AdminChatTests(SchemaFixture db, Chromium chromium) : IClassFixture<SchemaFixture>, IClassFixture<Chromium>
{
    private static readonly string s_answer = string.Join(' ', Enumerable.Range(1, 60).Select(i => $"word{i}"));

    [DatabaseFact]
    public async Task Chat_AnswerStreamsInWithItsToolCall_StopThenRegenerate()
    {
        var slowOnce = 1;
        // The answer starts once the worker knows the page watches the run (so its text reaches the page as it streams), and
        // holds after 20 of its text deltas until the test has seen text on the page: the run is still streaming then, however
        // slow the machine (a time-based stream alone can end before a loaded browser shows its first piece).
        var pageFollows = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var textSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { StreamChunkSize = 6 });
        claude.Respond(async (request, cancellationToken) =>
        {
            if (request.LastUserText.Contains("stop me", StringComparison.Ordinal) && Interlocked.Exchange(ref slowOnce, 0) == 1)
            {
                return FakeReply.Text(s_answer + s_answer) with { EventDelay = TimeSpan.FromMilliseconds(300) };
            }

            if (request.LastUserText.Contains("stop me", StringComparison.Ordinal))
            {
                return FakeReply.Text("regenerated answer");
            }

            if (request.ToolResults.Count == 0)
            {
                return FakeReply.Message(FakeContentBlock.ToolUse("lookup_order", new { order = "1042" })) with { StopReason = "tool_use" };
            }

            await pageFollows.Task.WaitAsync(cancellationToken);
            // message_start, content_block_start and ping come before the text deltas.
            return FakeReply.Text(s_answer) with { EventDelay = TimeSpan.FromMilliseconds(60), StreamPause = new FakeStreamPause(3 + 20, textSeen.Task) };
        });
        var tool = new TestTool("lookup_order", (_, _, _) => Task.FromResult("order 1042: shipped"));
        await using var app = await AdminApp.StartAsync(db, claude, worker: true, agentpgBuilder: b => b.AddTool(tool));
        var agent = await app.Client.GetOrCreateAgentAsync(new AgentDefinition { Name = "chat_ui", Model = "claude-sonnet-4-5", Tools = ["lookup_order"] });
        var (page, errors) = await chromium.PageAsync();

        await page.GotoAsync(new Uri(app.Root, "chat").ToString());
        await page.SelectOptionAsync("select[name=agent]", agent.Name);
        await page.FillAsync("textarea[name=message]", "Where is order 1042?");
        await page.ClickAsync("button:has-text('Start')");
        await page.WaitForURLAsync(url => url.Contains("/agentpg/chat/", StringComparison.Ordinal));
        var sessionId = Guid.Parse(page.Url.Split('/')[^1].Split('?')[0]);
        var run = Assert.Single((await app.Client.ListRunsAsync(new RunQuery { SessionId = sessionId })).Items);

        // The tool call shows up live, then the text grows while the run is still streaming.
        await page.Locator("[data-live-tools] li", new PageLocatorOptions { HasText = "lookup_order" }).WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
        await Eventually.TrueAsync(() => app.Client.Engine.Deltas.IsWatched(run.Id), "the worker learns that the page watches the run");
        pageFollows.SetResult();
        var live = page.Locator("[data-live-text]");
        await Eventually.TrueAsync(async () => (await live.TextContentAsync() ?? "").Length > 0, "the first text delta is on the page");
        var first = (await live.TextContentAsync())!.Length;
        Assert.NotEqual(RunState.Completed, (await app.Client.GetRunAsync(run.Id)).State);
        textSeen.SetResult();
        await Eventually.TrueAsync(async () => (await live.CountAsync()) == 0 || ((await live.TextContentAsync()) ?? "").Length > first,
            "the streamed text grew (or the finished page replaced it)");
        // When the run finishes the page reloads with the stored answer (not the live message, whose block has the same classes).
        await page.Locator(".message.assistant:not(.live) .block.text", new PageLocatorOptions { HasText = "word60" }).WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
        Assert.Equal(RunState.Completed, (await app.Client.GetRunAsync(run.Id)).State);

        // Stop a slow answer, then regenerate it.
        await page.FillAsync("textarea[name=message]", "stop me");
        await page.ClickAsync("button:has-text('Send')");
        await Eventually.TrueAsync(async () => ((await page.Locator("[data-live-text]").TextContentAsync()) ?? "").Length > 0, "the slow answer started");
        await page.ClickAsync("button:has-text('Stop')");
        await page.Locator("button:has-text('Regenerate last response')").WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
        var stopped = (await app.Client.ListRunsAsync(new RunQuery { SessionId = sessionId, Limit = 1 })).Items[0];
        Assert.Equal(RunState.Cancelled, stopped.State);
        await page.ClickAsync("button:has-text('Regenerate last response')");
        await page.Locator(".message.assistant:not(.live) .block.text", new PageLocatorOptions { HasText = "regenerated answer" }).WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });

        Assert.Empty(errors);
    }
}
