namespace AgentPg;

/// <summary>A tool whose database writes commit together with its recorded result, exactly once.</summary>
/// <remarks>
/// The worker opens a transaction, passes it as <see cref="ToolContext.Transaction"/>, records the tool's result in the
/// same transaction and commits. If the tool throws, times out, or the process dies, the tool's writes roll back with
/// the result, so a retry never duplicates them. Do the tool's database work through <see cref="ToolContext.Transaction"/>
/// (and its <c>Connection</c>); do not commit or roll it back yourself, and dispose your data readers before returning. Pass the cancellation token to every statement:
/// a tool still running when its attempt ends (timeout, cancelled run, stop) keeps its connection and transaction, with
/// their locks, until it ends, and only then is the transaction rolled back.
/// </remarks>
public interface ITransactionalTool : ITool
{
}
