using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Fact]
    public async Task Create_MemoryToolFromTheSdk_IsAcceptedAndRecordedAsTyped_AndAScriptedMemoryCallComesBack()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        FakeRequest? seen = null;
        claude.Respond(request =>
        {
            seen = request;
            return FakeReply.Message(FakeContentBlock.Memory(new { command = "view", path = "/memories" })) with { StopReason = "tool_use" };
        });

        var message = await client.Messages.Create(new MessageCreateParams
        {
            Model = Sdk.Model,
            MaxTokens = 256,
            Messages = [new UserMessageParam("What do you remember?")],
            Tools = [new MemoryTool20250818()],
        });

        var tool = Assert.Single(seen!.Tools);
        Assert.Empty(Assert.Single(claude.Requests).Betas);
        Assert.Equal("memory", tool.Name);
        Assert.Equal("memory_20250818", tool.ServerToolType);
        Assert.Null(tool.InputSchema);
        var toolUse = Assert.Single(Sdk.ToolUses(message));
        Assert.Equal("memory", toolUse.Name);
        Assert.Equal("view", toolUse.Input["command"].GetString());
        Assert.Equal("/memories", toolUse.Input["path"].GetString());
    }
}
