using Microsoft.Extensions.Logging;

namespace AgentPg.Mcp;

/// <summary>Every log message of AgentPg.Mcp, with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(9001, LogLevel.Information, "MCP server {Server} connected; {ToolCount} tools registered")]
    public static partial void Connected(ILogger logger, string server, int toolCount);

    [LoggerMessage(9002, LogLevel.Warning, "MCP server {Server} connection lost; reconnecting")]
    public static partial void ConnectionLost(ILogger logger, string server, Exception? exception);

    [LoggerMessage(9003, LogLevel.Information, "MCP server {Server} reconnected; {ToolCount} tools registered")]
    public static partial void Reconnected(ILogger logger, string server, int toolCount);

    [LoggerMessage(9004, LogLevel.Warning, "MCP server {Server} reconnection failed; next attempt in {DelayMs} ms")]
    public static partial void ReconnectFailed(ILogger logger, Exception exception, string server, double delayMs);

    [LoggerMessage(9005, LogLevel.Information, "MCP server {Server} changed its tools; {ToolCount} tools registered")]
    public static partial void ToolsChanged(ILogger logger, string server, int toolCount);

    [LoggerMessage(9006, LogLevel.Warning, "MCP server {Server}: listing its tools after tools/list_changed failed")]
    public static partial void ToolListFailed(ILogger logger, Exception exception, string server);

    [LoggerMessage(9007, LogLevel.Warning, "MCP server {Server}: {Message}")]
    public static partial void ToolsSkipped(ILogger logger, string server, string message);

    [LoggerMessage(9008, LogLevel.Information, "MCP server {Server} connection closed")]
    public static partial void Closed(ILogger logger, string server);

    [LoggerMessage(9009, LogLevel.Debug, "MCP server {Server} closing failed")]
    public static partial void CloseFailed(ILogger logger, Exception exception, string server);

    [LoggerMessage(9010, LogLevel.Debug, "MCP server {Server} stderr: {Line}")]
    public static partial void ServerStandardError(ILogger logger, string server, string line);
}
