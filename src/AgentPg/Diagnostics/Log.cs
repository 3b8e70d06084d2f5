using Microsoft.Extensions.Logging;

namespace AgentPg.Diagnostics;

/// <summary>Every log message of AgentPg, with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "AgentPg instance {InstanceId} ({InstanceName}) started on schema {Schema} with {ToolCount} tools")]
    public static partial void ClientStarted(ILogger logger, string instanceId, string instanceName, string schema, int toolCount);

    [LoggerMessage(1002, LogLevel.Information, "AgentPg instance {InstanceId} stopped; released {ReleasedCount} runs and tool executions")]
    public static partial void ClientStopped(ILogger logger, string instanceId, int releasedCount);

    [LoggerMessage(1003, LogLevel.Information, "Schema {Schema} migrated to version {Version} on start")]
    public static partial void MigratedOnStart(ILogger logger, string schema, int version);

    [LoggerMessage(1004, LogLevel.Error, "Syncing tool {ToolName} to the database failed")]
    public static partial void ToolSyncFailed(ILogger logger, Exception exception, string toolName);

    [LoggerMessage(1005, LogLevel.Warning, "Stopping instance {InstanceId} did not complete cleanly")]
    public static partial void StopFailed(ILogger logger, Exception exception, string instanceId);
}
