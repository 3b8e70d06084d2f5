namespace AgentPg.Tests.Infrastructure;

/// <summary>A test that needs PostgreSQL: skipped when it is unreachable, except under CI=true where it runs (and fails),
/// so a green CI can never mean "ran nothing".</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class DatabaseFactAttribute : FactAttribute
{
    public DatabaseFactAttribute()
    {
        if (TestDatabase.UnavailableReason is { } reason && !TestDatabase.IsCi)
        {
            Skip = reason;
        }
    }
}

/// <summary>The <see cref="DatabaseFactAttribute"/> rule for theories.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class DatabaseTheoryAttribute : TheoryAttribute
{
    public DatabaseTheoryAttribute()
    {
        if (TestDatabase.UnavailableReason is { } reason && !TestDatabase.IsCi)
        {
            Skip = reason;
        }
    }
}
