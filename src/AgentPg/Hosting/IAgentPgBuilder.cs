namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Configures AgentPg in a service collection; returned by
/// <see cref="AgentPgServiceCollectionExtensions.AddAgentPg(IServiceCollection, Action{AgentPg.AgentPgOptions}?)"/>.</summary>
/// <remarks>Extension methods on this interface add the worker, tools and agents (<see cref="AgentPgBuilderExtensions"/>);
/// add-on packages extend it the same way.</remarks>
public interface IAgentPgBuilder
{
    /// <summary>Gets the service collection AgentPg is registered in.</summary>
    IServiceCollection Services { get; }
}
