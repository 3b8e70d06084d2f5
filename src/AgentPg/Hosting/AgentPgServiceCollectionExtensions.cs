using AgentPg;
using AgentPg.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers AgentPg in a service collection.</summary>
public static class AgentPgServiceCollectionExtensions
{
    /// <summary>Registers a singleton <see cref="AgentPgClient"/> configured by a delegate.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Configures the options; may be <see langword="null"/> to keep the defaults.</param>
    /// <returns>A builder that adds the worker, tools and agents.</returns>
    /// <remarks>
    /// <para>Calling it again is harmless: the delegates add up and the same builder state is returned.</para>
    /// <para>The client uses the <see cref="NpgsqlDataSource"/> registered in the container (for example by
    /// <c>services.AddNpgsqlDataSource(connectionString)</c> from Npgsql.DependencyInjection) unless
    /// <see cref="AgentPgBuilderExtensions.UseDataSource"/> says otherwise; <see cref="ILoggerFactory"/> and
    /// <see cref="TimeProvider"/> come from the container when registered and not set in the options.</para>
    /// <para>The options are validated when the host starts, with the same messages as <see cref="AgentPgClient.Create"/>.
    /// The agents added with <see cref="AgentPgBuilderExtensions.AddAgent"/> are created when the host starts; the client
    /// processes runs only after <see cref="AgentPgBuilderExtensions.AddWorker"/>.</para>
    /// </remarks>
    public static IAgentPgBuilder AddAgentPg(this IServiceCollection services, Action<AgentPgOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var registration = Register(services);
        if (configure is not null)
        {
            services.Configure(configure);
        }

        return registration;
    }

    /// <summary>Registers a singleton <see cref="AgentPgClient"/> whose options are bound from configuration.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configuration">The section holding the options, for example <c>builder.Configuration.GetSection("AgentPg")</c>.
    /// Durations are <see cref="TimeSpan"/> strings (<c>"00:00:15"</c>); nested options are sections (<c>RunRescue:Timeout</c>).</param>
    /// <returns>A builder that adds the worker, tools and agents.</returns>
    /// <remarks>See <see cref="AddAgentPg(IServiceCollection, Action{AgentPgOptions}?)"/>. Further delegates can be added with
    /// <c>services.Configure&lt;AgentPgOptions&gt;(…)</c> or another <c>AddAgentPg</c> call. A key of the section that names
    /// no option (a misspelling) fails the host's start with an <see cref="InvalidOperationException"/> naming the key.</remarks>
    public static IAgentPgBuilder AddAgentPg(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var registration = Register(services);
        // A key that is no option (a typo: "MaxConcurentStreamingRuns", "RunRescue:Timout") fails the host's start naming it,
        // instead of leaving the option at its default while the configuration says otherwise.
        services.AddOptions<AgentPgOptions>().Bind(configuration, binder => binder.ErrorOnUnknownConfiguration = true);
        return registration;
    }

    private static AgentPgRegistration Register(IServiceCollection services)
    {
        foreach (var descriptor in services)
        {
            if (descriptor.ServiceType == typeof(AgentPgRegistration) && descriptor.ImplementationInstance is AgentPgRegistration existing)
            {
                return existing;
            }
        }

        var registration = new AgentPgRegistration(services);
        services.AddSingleton(registration);
        services.AddOptions<AgentPgOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AgentPgOptions>, AgentPgOptionsValidation>());
        services.TryAddSingleton(CreateClient);
        // Before any hosted service registered later (a web server, the application's own) can create runs or claim work.
        services.AddHostedService<AgentPgHostedService>();
        return registration;
    }

    private static AgentPgClient CreateClient(IServiceProvider services)
    {
        var registration = services.GetRequiredService<AgentPgRegistration>();
        var options = services.GetRequiredService<IOptions<AgentPgOptions>>().Value;
        var dataSource = registration.DataSourceFactory is { } factory
            ? factory(services) ?? throw new InvalidOperationException("The factory passed to UseDataSource returned null; return the NpgsqlDataSource AgentPg should use.")
            : services.GetService<NpgsqlDataSource>() ?? throw new InvalidOperationException(
                "AgentPg found no NpgsqlDataSource. Register one in the container with services.AddNpgsqlDataSource(connectionString) " +
                "(package Npgsql.DependencyInjection), or tell AgentPg which to use with services.AddAgentPg(…).UseDataSource(sp => …).");

        // Create copies the options: the container's instance stays as configured.
        var effective = options.Clone();
        effective.LoggerFactory ??= services.GetService<ILoggerFactory>();
        if (ReferenceEquals(effective.TimeProvider, TimeProvider.System) && services.GetService<TimeProvider>() is { } time)
        {
            effective.TimeProvider = time;
        }

        var client = AgentPgClient.Create(dataSource, effective);
        foreach (var tool in registration.Tools)
        {
            client.RegisterTool(tool(services));
        }

        return client;
    }
}
