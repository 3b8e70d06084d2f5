using System.Text.Json.Nodes;
using AgentPg.Notifications;
using AgentPg.Runs;

namespace AgentPg.Tests.Unit.Runs;

/// <summary>The notification payloads are written straight to UTF-8: the text is the one a <see cref="JsonObject"/> of the same
/// fields serializes to (what the engine sent before, and what other instances of other versions parse).</summary>
public sealed class NotifierPayloadTests
{
    [Fact]
    public void RunCreated_IsTheJsonObjectsText_AndParsesBack()
    {
        var run = Guid.NewGuid();
        var session = Guid.NewGuid();
        var parent = Guid.NewGuid();

        var root = Notifier.RunCreatedPayload(run, RunMode.Streaming, session, null);
        var child = Notifier.RunCreatedPayload(run, RunMode.Batch, session, parent);

        Assert.Equal(new JsonObject
        {
            ["run_id"] = run.ToString(), ["run_mode"] = "streaming", ["session_id"] = session.ToString(), ["parent_run_id"] = null,
        }.ToJsonString(), root);
        Assert.Equal(new JsonObject
        {
            ["run_id"] = run.ToString(), ["run_mode"] = "batch", ["session_id"] = session.ToString(), ["parent_run_id"] = parent.ToString(),
        }.ToJsonString(), child);
        Assert.Equal(new Notification(Channels.RunCreated, run, "batch", null, parent, session), Notification.Parse(Channels.RunCreated, child));
    }

    [Theory]
    [InlineData(RunState.Completed, "completed", null)]
    [InlineData(RunState.Failed, "failed", "streaming")]
    [InlineData(RunState.Cancelled, "cancelled", "batch \"quoted\" <&>")]
    public void RunFinalized_IsTheJsonObjectsText_AndParsesBack(RunState state, string stateText, string? nextRunMode)
    {
        var run = new Run { Id = Guid.NewGuid(), SessionId = Guid.NewGuid(), ParentRunId = Guid.NewGuid(), Depth = 2, RunMode = RunMode.Batch };

        var payload = Notifier.RunFinalizedPayload(run, state, nextRunMode);

        Assert.Equal(new JsonObject
        {
            ["run_id"] = run.Id.ToString(),
            ["session_id"] = run.SessionId.ToString(),
            ["state"] = stateText,
            ["parent_run_id"] = run.ParentRunId.ToString(),
            ["depth"] = run.Depth,
            ["run_mode"] = "batch",
            ["next_run_mode"] = nextRunMode,
        }.ToJsonString(), payload);
        Assert.Equal(new Notification(Channels.RunFinalized, run.Id, "batch", stateText, run.ParentRunId, run.SessionId, nextRunMode),
            Notification.Parse(Channels.RunFinalized, payload));
    }

    [Fact]
    public void ToolPending_IsTheJsonObjectsText()
    {
        var run = Guid.NewGuid();

        Assert.Equal(new JsonObject { ["run_id"] = run.ToString() }.ToJsonString(), Notifier.ToolPendingPayload(run));
    }

    [Fact]
    public void Payloads_WrittenOneAfterAnother_DoNotShareText()
    {
        var first = Guid.NewGuid();
        var second = Guid.NewGuid();

        var a = Notifier.ToolPendingPayload(first);
        var b = Notifier.RunCreatedPayload(second, RunMode.Streaming, second, null);

        Assert.Equal(first, Notification.Parse(Channels.ToolPending, a).RunId);
        Assert.Equal(second, Notification.Parse(Channels.RunCreated, b).RunId);
    }
}
