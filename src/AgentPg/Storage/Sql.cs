using Npgsql;

namespace AgentPg.Storage;

/// <summary>All SQL text of one schema, built once per client from the validated schema name.</summary>
internal sealed class Sql
{
    public Sql(SchemaName schema)
    {
        Schema = schema;
        Agents = new AgentSql(schema);
        Sessions = new SessionSql(schema);
        Instances = new InstanceSql(schema);
        Runs = new RunSql(schema);
        Messages = new MessageSql(schema);
        Iterations = new IterationSql(schema);
        ToolExecutions = new ToolExecutionSql(schema);
        Leader = new LeaderSql(schema);
        Diagnostics = new DiagnosticsSql(schema);
        Rescue = new RescueSql(schema, Leader);
        InstanceCleanup = new InstanceCleanupSql(schema, Leader);
        RunEvents = new RunEventSql(schema, Leader);
        Compaction = new CompactionSql(schema);
        Approvals = new ApprovalSql(schema, Leader);
        Queries = new QuerySql(schema);
        Memory = new MemorySql(schema);
    }

    public SchemaName Schema { get; }

    public AgentSql Agents { get; }

    public SessionSql Sessions { get; }

    public InstanceSql Instances { get; }

    public RunSql Runs { get; }

    public MessageSql Messages { get; }

    public IterationSql Iterations { get; }

    public ToolExecutionSql ToolExecutions { get; }

    public LeaderSql Leader { get; }

    public DiagnosticsSql Diagnostics { get; }

    public RescueSql Rescue { get; }

    public InstanceCleanupSql InstanceCleanup { get; }

    public RunEventSql RunEvents { get; }

    public CompactionSql Compaction { get; }

    public ApprovalSql Approvals { get; }

    public QuerySql Queries { get; }

    public MemorySql Memory { get; }

    /// <summary>What a completed run's response needs besides the run row, in one round trip: its final message, its tool
    /// calls and the token usage summed over the run and its descendants.</summary>
    public async Task<(Message? Message, List<ToolCall> ToolCalls, Usage Total)> FinalAnswerAsync(NpgsqlDataSource dataSource, Run run,
        CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            Messages.AddFinalOfRun(batch, run.Id, run.CurrentIterationId);
            ToolExecutions.AddCallsOfRun(batch, run.Id);
            Runs.AddTreeUsage(batch, run.Id);
            var reader = await batch.ExecuteReaderAsync(dataSource, prepare: false, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                var message = (await MessageSql.ReadMessagesAsync(reader, cancellationToken).ConfigureAwait(false)).FirstOrDefault();
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var toolCalls = new List<ToolCall>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    toolCalls.Add(ToolExecutionSql.ReadToolCall(reader));
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return (message, toolCalls, RunSql.ReadTreeUsage(reader));
            }
        }
    }
}
