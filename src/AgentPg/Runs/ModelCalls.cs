using System.Text.Json;

namespace AgentPg.Runs;

internal static class ModelCalls
{
    public static ModelCallContext Context(ClaimedRun claimed, IterationContext context, RunMode mode, Dictionary<string, JsonElement>? body,
        JsonElement? response, Usage? usage) => new()
    {
        RunId = claimed.Run.Id,
        SessionId = claimed.Run.SessionId,
        AgentId = claimed.Run.AgentId,
        IterationNumber = context.IterationNumber,
        RunMode = mode,
        Request = body is null ? default : JsonSerializer.SerializeToElement(body),
        Response = response,
        Usage = usage,
    };
}
