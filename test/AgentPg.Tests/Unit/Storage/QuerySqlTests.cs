using AgentPg.Storage;

namespace AgentPg.Tests.Unit.Storage;

public sealed class QuerySqlTests
{
    [Fact]
    public void Filtered_EveryTenantFilteredStatement_HasAVersionWithoutTheFilterAndOneWithAPlainExists()
    {
        var sql = new QuerySql(new SchemaName("x"));

        foreach (var statement in new[] { sql.Runs, sql.ToolExecutions, sql.CompactionEvents, sql.StatisticsQueue, sql.StatisticsBuckets })
        {
            Assert.DoesNotContain("IS NULL OR EXISTS", statement.Everyone, StringComparison.Ordinal);
            Assert.DoesNotContain("EXISTS", statement.Everyone, StringComparison.Ordinal);
            Assert.DoesNotContain("IS NULL OR EXISTS", statement.OneTenant, StringComparison.Ordinal);
            Assert.Contains("EXISTS (", statement.OneTenant, StringComparison.Ordinal);
            Assert.Contains("metadata @> $", statement.OneTenant, StringComparison.Ordinal);
            Assert.DoesNotContain("metadata @> $", statement.Everyone, StringComparison.Ordinal);
            Assert.Equal(statement.OneTenant.Count(c => c == '('), statement.OneTenant.Count(c => c == ')'));
            Assert.Equal(statement.Everyone.Count(c => c == '('), statement.Everyone.Count(c => c == ')'));
            Assert.Same(statement.Everyone, statement.For(null));
            Assert.Same(statement.OneTenant, statement.For("{}"));
        }
    }
}
