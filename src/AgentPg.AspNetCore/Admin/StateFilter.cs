namespace AgentPg.AspNetCore.Admin;

/// <summary>A list page's state filter: the <c>state</c> query value (a state's database name) parsed for the query, and the
/// choices of its select.</summary>
internal sealed class StateFilter<TState>(Func<TState, string> name, string what)
    where TState : struct, Enum
{
    private static readonly TState[] s_states = Enum.GetValues<TState>();

    /// <summary>The states to list: <see langword="null"/> (any) without a value; an unknown name is a 400.</summary>
    public IReadOnlyList<TState>? Parse(string? value)
    {
        if (value is null)
        {
            return null;
        }

        foreach (var s in s_states)
        {
            if (name(s) == value)
            {
                return [s];
            }
        }

        throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{value}' is not a {what}.");
    }

    /// <summary>The select's options, <paramref name="selected"/> selected.</summary>
    public IEnumerable<Html> Options(string? selected) => s_states.Select(s => AdminPages.Option(name(s), name(s), selected));
}
