using Microsoft.Extensions.Logging;

namespace AgentPg.Diagnostics;

internal static partial class Log
{
    [LoggerMessage(8101, LogLevel.Information, "Session {SessionId} compacted ({Reason}): {OriginalTokens} → {CompactedTokens} tokens, {Removed} messages summarised, {Pruned} pruned")]
    public static partial void Compacted(ILogger logger, Guid sessionId, string reason, long originalTokens, long compactedTokens, int removed, int pruned);

    [LoggerMessage(8102, LogLevel.Warning, "Claude's count_tokens failed for session {SessionId}; this client estimates token counts from now on")]
    public static partial void TokenCountingFailed(ILogger logger, Exception exception, Guid sessionId);

    [LoggerMessage(8105, LogLevel.Warning, "Claude's count_tokens failed for session {SessionId}; this client estimates token counts for the next {Minutes} minutes")]
    public static partial void TokenCountingPaused(ILogger logger, Exception exception, Guid sessionId, int minutes);

    [LoggerMessage(8106, LogLevel.Debug, "Session {SessionId} is over count_tokens' size limit ({Detail}); its tokens are estimated")]
    public static partial void TokenCountingTooLarge(ILogger logger, Guid sessionId, string detail);

    [LoggerMessage(8103, LogLevel.Warning, "Automatic compaction of session {SessionId} before run {RunId}'s request failed; the request is sent as it is")]
    public static partial void AutoCompactionFailed(ILogger logger, Exception exception, Guid sessionId, Guid runId);

    [LoggerMessage(8104, LogLevel.Information, "Automatic compaction of session {SessionId} skipped: the part it keeps ({KeptTokens} tokens: " +
        "CompactionOptions.ProtectedTokens, PreserveLastN, a run in progress) is over the trigger ({TriggerTokens} tokens) on its own")]
    public static partial void AutoCompactionSkipped(ILogger logger, Guid sessionId, long keptTokens, int triggerTokens);
}
