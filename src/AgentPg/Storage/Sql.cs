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
}
