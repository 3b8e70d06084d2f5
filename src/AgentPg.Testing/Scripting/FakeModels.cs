namespace AgentPg.Testing;

/// <summary>Ready-made responders for <see cref="FakeClaudeServerOptions.Responder"/> and
/// <see cref="FakeClaudeServer.Respond(Func{FakeRequest, FakeReply?})"/>.</summary>
public static class FakeModels
{
    /// <summary>
    /// A deterministic demo model for quick starts and samples. It calls the tools it is offered when the last user turn
    /// asks for what they do: a tool whose name or description mentions weather for a weather question (its location or
    /// city property gets the place named after "in", "for" or "at"), a calculator-like tool for an arithmetic expression
    /// (an expression property gets the expression, number properties its operands), and any tool the prompt names.
    /// Inputs are inferred from each tool's <c>input_schema</c> (required properties, enums). Parallel calls are made when
    /// several tools apply, unless <c>disable_parallel_tool_use</c> is set; <c>tool_choice</c> is honoured. When tool
    /// results come back it answers in text quoting them; otherwise it echoes the request in a short text. With extended
    /// thinking enabled or adaptive, every answer starts with a signed thinking block.
    /// </summary>
    public static Func<FakeRequest, FakeReply> Demo { get; } = DemoModel.Reply;
}
