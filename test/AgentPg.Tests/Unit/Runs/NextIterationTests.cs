using AgentPg.Runs;

namespace AgentPg.Tests.Unit.Runs;

public sealed class NextIterationTests
{
    private static PreviousIteration Previous(string trigger = TriggerTypes.UserPrompt, string? stopReason = null, string? errorType = null, int? maxTokens = null)
        => new(trigger, stopReason, errorType, maxTokens, ExtendedContext: false);

    [Fact]
    public void Decide_FirstIteration_IsTheUserPrompt()
        => Assert.Equal((TriggerTypes.UserPrompt, (int?)null), NextIteration.Decide(0, null));

    [Fact]
    public void Decide_FirstIterationEvenWithAPreviousRow_IsTheUserPrompt()
        => Assert.Equal((TriggerTypes.UserPrompt, (int?)null), NextIteration.Decide(0, Previous(stopReason: StopReasons.PauseTurn)));

    [Fact]
    public void Decide_LaterIterationWithoutThePreviousRow_SendsToolResults()
        => Assert.Equal((TriggerTypes.ToolResults, (int?)null), NextIteration.Decide(2, null));

    [Fact]
    public void Decide_AfterToolUse_SendsToolResults()
        => Assert.Equal((TriggerTypes.ToolResults, (int?)null), NextIteration.Decide(1, Previous(stopReason: StopReasons.ToolUse)));

    [Fact]
    public void Decide_AfterPauseTurn_Continues()
        => Assert.Equal((TriggerTypes.Continuation, (int?)null), NextIteration.Decide(1, Previous(stopReason: StopReasons.PauseTurn, maxTokens: 100)));

    [Fact]
    public void Decide_AfterATruncatedToolCall_ContinuesWithTwiceTheTokens()
        => Assert.Equal((TriggerTypes.Continuation, (int?)2048),
            NextIteration.Decide(1, Previous(stopReason: StopReasons.MaxTokens, errorType: ErrorTypes.TruncatedToolUse, maxTokens: 1024)));

    [Fact]
    public void Decide_AfterATruncatedToolCallWithTheAgentsTokens_ContinuesWithTheAgentsTokens()
        => Assert.Equal((TriggerTypes.Continuation, (int?)null),
            NextIteration.Decide(1, Previous(errorType: ErrorTypes.TruncatedToolUse, maxTokens: null)));

    [Theory]
    [InlineData(TriggerTypes.UserPrompt)]
    [InlineData(TriggerTypes.ToolResults)]
    [InlineData(TriggerTypes.Continuation)]
    public void Decide_AfterAnAbandonedIteration_RepeatsItWithItsTriggerAndTokens(string trigger)
        => Assert.Equal((trigger, (int?)512), NextIteration.Decide(3, Previous(trigger, errorType: ErrorTypes.Abandoned, maxTokens: 512)));

    [Fact]
    public void Decide_AbandonedWinsOverPauseTurn()
        => Assert.Equal((TriggerTypes.ToolResults, (int?)null),
            NextIteration.Decide(2, Previous(TriggerTypes.ToolResults, stopReason: StopReasons.PauseTurn, errorType: ErrorTypes.Abandoned)));
}
