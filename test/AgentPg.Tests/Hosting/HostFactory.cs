using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace AgentPg.Tests.Hosting;

/// <summary>Generic hosts wired the way an application does it: AddNpgsqlDataSource + AddAgentPg.</summary>
internal static class HostFactory
{
    public static HostApplicationBuilder Builder()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddNpgsqlDataSource(TestDatabase.ConnectionString);
        return builder;
    }

    /// <summary>The fixture's short test intervals, the schema and the fake Claude.</summary>
    public static Action<AgentPgOptions> Options(SchemaFixture db, FakeClaudeServer? claude, Action<AgentPgOptions>? configure = null) => o =>
    {
        var test = db.Options();
        o.Schema = test.Schema;
        o.ApiKey = claude?.ApiKey ?? test.ApiKey;
        o.BaseUrl = claude?.BaseUrl;
        o.RunPollInterval = test.RunPollInterval;
        o.ToolPollInterval = test.ToolPollInterval;
        o.BatchPollInterval = test.BatchPollInterval;
        o.HeartbeatInterval = test.HeartbeatInterval;
        o.InstanceTtl = test.InstanceTtl;
        o.LeaderTtl = test.LeaderTtl;
        o.CleanupInterval = test.CleanupInterval;
        configure?.Invoke(o);
    };
}
