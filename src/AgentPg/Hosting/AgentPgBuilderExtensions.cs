using AgentPg;
using AgentPg.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Npgsql;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the worker, tools, agents and the data source to an AgentPg registration.</summary>
public static class AgentPgBuilderExtensions
{
    /// <summary>Sets the PostgreSQL data source the client uses.</summary>
    /// <param name="builder">The AgentPg builder.</param>
    /// <param name="factory">Returns the data source; called once, when the client is created.</param>
    /// <returns>The builder.</returns>
    /// <remarks>Without it, the client uses the <see cref="NpgsqlDataSource"/> registered in the container (for example by
    /// <c>AddNpgsqlDataSource</c>). Use it when the application has several data sources, or AgentPg needs its own (for
    /// example with a larger pool or through a different pooler).</remarks>
    public static IAgentPgBuilder UseDataSource(this IAgentPgBuilder builder, Func<IServiceProvider, NpgsqlDataSource> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Registration(builder).DataSourceFactory = factory;
        return builder;
    }

    /// <summary>Makes this process an AgentPg worker: a hosted service starts the client with the host and stops it with it.</summary>
    /// <param name="builder">The AgentPg builder.</param>
    /// <returns>The builder.</returns>
    /// <remarks>
    /// <para>When the host stops, the worker stops claiming, lets in-flight work finish until the host's shutdown timeout
    /// (<c>HostOptions.ShutdownTimeout</c>), then releases what is left to the other instances: released work is never
    /// failed. Set the timeout longer than the tools and model calls that should finish rather than be redone.</para>
    /// <para>Processes without a worker are producers: they create runs and read results, and the workers elsewhere run them.</para>
    /// </remarks>
    public static IAgentPgBuilder AddWorker(this IAgentPgBuilder builder)
    {
        Registration(builder).RunWorker = true;
        return builder;
    }

    /// <summary>Registers a tool that is resolved from a new dependency-injection scope for each execution.</summary>
    /// <typeparam name="TTool">The tool type. Unless the container already has a registration for it, it is registered as
    /// scoped, so its constructor can take scoped services such as a <c>DbContext</c>.</typeparam>
    /// <param name="builder">The AgentPg builder.</param>
    /// <returns>The builder.</returns>
    /// <remarks>
    /// <para>The tool's name, description and schema are read once, from an instance resolved when the client is created;
    /// every execution then gets its own scope (disposed when the execution ends) and its own instance.</para>
    /// <para>A <typeparamref name="TTool"/> that implements <see cref="ITransactionalTool"/> stays transactional: its
    /// writes through <see cref="ToolContext.Transaction"/> commit exactly once with its result.</para>
    /// </remarks>
    public static IAgentPgBuilder AddTool<TTool>(this IAgentPgBuilder builder)
        where TTool : class, ITool
    {
        var registration = Registration(builder);
        builder.Services.TryAddScoped<TTool>();
        registration.Tools.Add(ScopedTool.Create<TTool>);
        return builder;
    }

    /// <summary>Registers a tool instance (shared by every execution).</summary>
    /// <param name="builder">The AgentPg builder.</param>
    /// <param name="tool">The tool; it must be thread-safe.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException">The tool's name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>, or its description or
    /// schema is missing or invalid.</exception>
    public static IAgentPgBuilder AddTool(this IAgentPgBuilder builder, ITool tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        AgentPgClient.ValidateTool(tool);
        Registration(builder).Tools.Add(_ => tool);
        return builder;
    }

    /// <summary>Makes sure an agent exists when the host starts (<see cref="AgentPgClient.GetOrCreateAgentAsync"/>), before
    /// the worker claims any run.</summary>
    /// <param name="builder">The AgentPg builder.</param>
    /// <param name="definition">The agent. An existing agent with the same name and metadata is reused as it is.</param>
    /// <returns>The builder.</returns>
    /// <remarks>Look the agent up by name afterwards with <see cref="AgentPgClient.GetAgentByNameAsync"/>. Its delegates
    /// (<see cref="AgentDefinition.AgentIds"/>) and tool names are checked against the database when the host starts.</remarks>
    /// <exception cref="ArgumentException">A field of the definition is invalid (the message names it), as
    /// <see cref="AgentPgClient.GetOrCreateAgentAsync"/> would say.</exception>
    public static IAgentPgBuilder AddAgent(this IAgentPgBuilder builder, AgentDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        // The fields are the developer's to fix at the call, not a failed host start later.
        _ = AgentPgClient.ValidateDefinition(definition, nameof(definition));
        Registration(builder).Agents.Add(definition);
        return builder;
    }

    private static AgentPgRegistration Registration(IAgentPgBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (builder is AgentPgRegistration registration)
        {
            return registration;
        }

        foreach (var descriptor in builder.Services)
        {
            if (descriptor.ImplementationInstance is AgentPgRegistration existing)
            {
                return existing;
            }
        }

        throw new InvalidOperationException("Call services.AddAgentPg(…) first: this builder's service collection has no AgentPg registration.");
    }
}
