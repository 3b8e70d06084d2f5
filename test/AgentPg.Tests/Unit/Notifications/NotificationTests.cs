using AgentPg.Notifications;

namespace AgentPg.Tests.Unit.Notifications;

public sealed class NotificationTests
{
    [Fact]
    public void Parse_FullPayload_ReadsEveryField()
    {
        var run = Guid.NewGuid();
        var parent = Guid.NewGuid();
        var session = Guid.NewGuid();

        var n = Notification.Parse(Channels.RunFinalized,
            $$"""{"run_id":"{{run}}","run_mode":"batch","state":"completed","parent_run_id":"{{parent}}","session_id":"{{session}}","next_run_mode":"streaming"}""");

        Assert.Equal(new Notification(Channels.RunFinalized, run, "batch", "completed", parent, session, "streaming"), n);
    }

    [Fact]
    public void Parse_MissingAndNullFields_AreNull()
    {
        var run = Guid.NewGuid();

        var n = Notification.Parse(Channels.RunCreated, $$"""{"run_id":"{{run}}","parent_run_id":null}""");

        Assert.Equal(new Notification(Channels.RunCreated, run, null, null, null, null), n);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("")]
    [InlineData("{\"run_id\":")]
    public void Parse_MalformedPayload_KeepsOnlyTheChannel(string payload)
        => Assert.Equal(new Notification(Channels.ToolPending, null, null, null, null, null), Notification.Parse(Channels.ToolPending, payload));

    [Fact]
    public void Parse_WrongTypes_AreIgnored()
    {
        var n = Notification.Parse(Channels.RunState, """{"run_id":"not-a-guid","run_mode":7,"state":["x"],"session_id":42}""");

        Assert.Equal(new Notification(Channels.RunState, null, null, null, null, null), n);
    }

    [Fact]
    public void Parse_AJsonArray_KeepsOnlyTheChannel()
        => Assert.Equal(new Notification(Channels.RunState, null, null, null, null, null), Notification.Parse(Channels.RunState, "[1,2]"));
}
