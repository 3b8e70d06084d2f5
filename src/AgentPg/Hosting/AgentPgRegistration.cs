using AgentPg;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace AgentPg.Hosting;

/// <summary>What the builder collected: one instance per service collection, registered as a singleton so that a second
/// <c>AddAgentPg</c> finds it.</summary>
internal sealed class AgentPgRegistration : IAgentPgBuilder
{
    public AgentPgRegistration(IServiceCollection services) => Services = services;

    public IServiceCollection Services { get; }

    public Func<IServiceProvider, NpgsqlDataSource>? DataSourceFactory { get; set; }

    public bool RunWorker { get; set; }

    /// <summary>Each entry makes one tool when the client is created.</summary>
    public List<Func<IServiceProvider, ITool>> Tools { get; } = [];

    public List<AgentDefinition> Agents { get; } = [];
}
