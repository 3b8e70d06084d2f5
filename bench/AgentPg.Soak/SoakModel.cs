using AgentPg.Testing;

namespace AgentPg.Soak;

/// <summary>What the fake Claude answers: the prompt names the scenario ("soak KIND N"); a request that carries tool
/// results gets the final answer.</summary>
internal static class SoakModel
{
    public const string ChildAgent = "soak_child";

    public static readonly string[] Kinds = ["text", "effect", "echo", "both", "delegate"];

    private static readonly TimeSpan s_eventDelay = TimeSpan.FromMilliseconds(25);

    public static FakeReply Respond(FakeRequest request)
    {
        if (request.ToolResults.Count > 0)
        {
            return FakeReply.Text("Done: " + string.Join("; ", request.ToolResults.Select(r => r.Content))) with { EventDelay = s_eventDelay };
        }

        var words = request.LastUserText.Split(' ');
        var kind = words.Length >= 2 && words[0] == "soak" ? words[1] : "text";
        var label = words.Length >= 3 ? words[2] : "x";
        var reply = kind switch
        {
            "effect" => FakeReply.Message(FakeContentBlock.Text("Recording it."), Effect(label)),
            "echo" => FakeReply.Message(FakeContentBlock.Text("Echoing it."), Echo(label)),
            "both" => FakeReply.Message(FakeContentBlock.Text("Both, in parallel."), Effect(label), Echo(label)),
            "delegate" => FakeReply.Message(FakeContentBlock.Text("Delegating."), FakeContentBlock.ToolUse(ChildAgent, new { task = $"soak effect {label}-child" })),
            _ => FakeReply.Text("A streamed answer that takes a little while to arrive, so that faults land in the middle of it: " + label),
        };
        return reply with { EventDelay = s_eventDelay };
    }

    private static FakeContentBlock Effect(string label)
        => FakeContentBlock.ToolUse(EffectTool.ToolName, new { label, hold_ms = Random.Shared.Next(0, 1500) });

    private static FakeContentBlock Echo(string label)
        => FakeContentBlock.ToolUse(EchoTool.ToolName, new { label, hold_ms = Random.Shared.Next(0, 1500) });
}
