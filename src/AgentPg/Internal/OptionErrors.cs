namespace AgentPg.Internal;

/// <summary>Turns an options object's validation errors into the one exception every entry point throws: each problem on its
/// own line, so a misconfiguration shows everything there is to fix at once.</summary>
internal static class OptionErrors
{
    /// <summary>Throws when <paramref name="errors"/> is not empty.</summary>
    /// <param name="errors">What <c>Validate()</c> returned.</param>
    /// <param name="optionsType">The options class, named in the message.</param>
    /// <param name="paramName">The parameter that carried the options.</param>
    /// <exception cref="ArgumentException">There are errors.</exception>
    public static void ThrowIfAny(IReadOnlyList<string> errors, string optionsType, string paramName)
    {
        if (errors.Count > 0)
        {
            throw new ArgumentException($"Invalid {optionsType}:" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", errors), paramName);
        }
    }
}
