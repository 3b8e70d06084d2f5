using AgentPg.Storage;

namespace AgentPg.Runs;

/// <summary>The hard limits of a run (<see cref="AgentDefinition.MaxIterations"/>, <see cref="AgentDefinition.TokenBudget"/> and
/// their <see cref="RunOptions"/> counterparts), checked before each iteration's model call, streamed or batched.</summary>
/// <remarks>Both are decided from what is stored, never from counters in memory, so they hold across crashes, rescues and
/// instances: the iteration count is the run's current iteration (the claim or the iteration start numbered it), the tokens
/// are the usage recorded on the tree's runs. Without a budget the check costs no statement.</remarks>
internal sealed class RunLimits(Engine engine)
{
    /// <summary>The largest <see cref="AgentDefinition.MaxIterations"/> accepted (agent_max_iterations_valid).</summary>
    public const int MaxIterationsLimit = 10_000;

    public static void ValidateMaxIterations(int? value, string parameterName, string name)
    {
        if (value is { } max && max is < 1 or > MaxIterationsLimit)
        {
            throw new ArgumentException(
                $"{name} must be between 1 and {MaxIterationsLimit} model calls (was {max}); leave it null for no limit.", parameterName);
        }
    }

    public static void ValidateTokenBudget(long? value, string parameterName, string name)
    {
        if (value is <= 0)
        {
            throw new ArgumentException($"{name} must be a positive number of tokens (was {value}); leave it null for no budget.", parameterName);
        }
    }

    /// <summary>Throws <see cref="RunFailureException"/> (<see cref="ErrorTypes.IterationLimit"/> or
    /// <see cref="ErrorTypes.TokenBudgetExceeded"/>) when the iteration just started may not call Claude.</summary>
    /// <remarks>Called after the iteration is started (its row exists and the tool results before it are stored), so the run
    /// fails with a valid conversation and its last iteration records why it made no call.</remarks>
    public Task EnsureWithinAsync(ClaimedRun claimed, IterationContext context, CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        var agent = context.Agent;

        // RunOptions.MaxIterations is stored on the root run only: a child run follows its own agent's.
        if ((run.MaxIterations ?? agent.MaxIterations) is { } max && context.IterationNumber > max)
        {
            var advice = run.MaxIterations is not null
                ? $"its limit (RunOptions.MaxIterations = {max}). Run the prompt again with a larger RunOptions.MaxIterations, or null for no limit."
                : $"the limit of agent '{agent.Name}' (AgentDefinition.MaxIterations = {max}). Raise it (UpdateAgentAsync; null for no limit), " +
                  "then regenerate the run (RegenerateRunAsync) or run the prompt again.";
            throw new RunFailureException(ErrorTypes.IterationLimit,
                $"The run stopped before model call {context.IterationNumber}: it had made {max} iterations, {advice}");
        }

        // A child run carries its root's budget (stored when it was created); a root run without one follows its agent's.
        var budget = run.TokenBudget ?? (run.ParentRunId is null ? agent.TokenBudget : null);
        return budget is { } b ? EnsureWithinBudgetAsync(claimed, context, b, cancellationToken) : Task.CompletedTask;
    }

    private async Task EnsureWithinBudgetAsync(ClaimedRun claimed, IterationContext context, long budget, CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        var used = await Transient.RetryAsync(ct => engine.Sql.Runs.RootTreeTokensAsync(engine.DataSource, run.Id, ct), engine.Time, cancellationToken)
            .ConfigureAwait(false);
        if (used < budget)
        {
            return;
        }

        var source = run.ParentRunId is not null
            ? "the budget of its root run, which this delegated run counts against"
            : run.TokenBudget is not null
                ? "RunOptions.TokenBudget"
                : $"AgentDefinition.TokenBudget of agent '{context.Agent.Name}'";
        var scope = run.ParentRunId is null ? "The run and its delegated runs have" : "The run's tree (its root run and every delegated run) has";
        throw new RunFailureException(ErrorTypes.TokenBudgetExceeded,
            $"{scope} used {used} tokens (input + output + cache write + cache read), reaching the token budget of {budget} ({source}); " +
            $"model call {context.IterationNumber} of the run was not made. Give the root run a larger RunOptions.TokenBudget, or raise " +
            "the root agent's AgentDefinition.TokenBudget, and run the prompt again.");
    }
}
