using System.Globalization;

namespace AgentPg.Internal;

internal static class CompactionOptionsValidator
{
    public static List<string> Validate(CompactionOptions options, string prefix)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        if (options.Strategy is not (CompactionStrategy.Hybrid or CompactionStrategy.Summarization))
        {
            errors.Add($"{prefix}Strategy has the undefined value {(int)options.Strategy}; use CompactionStrategy.Hybrid or CompactionStrategy.Summarization.");
        }

        if (double.IsNaN(options.Trigger) || options.Trigger is <= 0 or > 1)
        {
            errors.Add($"{prefix}Trigger must be greater than 0 and at most 1 (was {options.Trigger.ToString(CultureInfo.InvariantCulture)}); " +
                       "it is the share of MaxTokensForModel at which a session needs compaction, 0.85 by default.");
        }

        if (options.MaxTokensForModel <= 0)
        {
            errors.Add($"{prefix}MaxTokensForModel must be greater than zero (was {options.MaxTokensForModel}); use the model's context window, 200000 by default.");
        }

        if (options.TargetTokens <= 0)
        {
            errors.Add($"{prefix}TargetTokens must be greater than zero (was {options.TargetTokens}); the default is 80000.");
        }
        else if (options.MaxTokensForModel > 0 && options.TargetTokens >= options.MaxTokensForModel)
        {
            errors.Add($"{prefix}TargetTokens ({options.TargetTokens}) must be less than MaxTokensForModel ({options.MaxTokensForModel}): " +
                       "it is the size compaction aims for inside the window.");
        }

        if (options.PreserveLastN < 0)
        {
            errors.Add($"{prefix}PreserveLastN must not be negative (was {options.PreserveLastN}); the default is 10.");
        }

        if (options.ProtectedTokens < 0)
        {
            errors.Add($"{prefix}ProtectedTokens must not be negative (was {options.ProtectedTokens}); the default is 40000.");
        }

        if (string.IsNullOrWhiteSpace(options.SummarizerModel))
        {
            errors.Add($"{prefix}SummarizerModel is empty; name a Claude model, for example \"claude-haiku-4-5\" (the default).");
        }

        if (options.SummarizerMaxTokens <= 0)
        {
            errors.Add($"{prefix}SummarizerMaxTokens must be greater than zero (was {options.SummarizerMaxTokens}); the default is 4096.");
        }

        return errors;
    }
}
