using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Migrations;

public sealed class AgentPgMigratorTests : ThrowawaySchemaTests
{
    [DatabaseFact]
    public async Task MigrateAsync_UpDownUp_LeavesTheSameCatalog()
    {
        var schema = NewSchema();
        var migrator = new AgentPgMigrator(DataSource, schema);

        Assert.Equal(AgentPgMigrator.LatestVersion, await migrator.MigrateAsync());
        var first = await CatalogAsync(schema);
        Assert.Contains(first, line => line.StartsWith("table agentpg_runs r p", StringComparison.Ordinal));
        Assert.Contains(first, line => line.StartsWith("table agentpg_instances r u", StringComparison.Ordinal));

        await migrator.RollbackAsync(0);
        Assert.Equal(0, await migrator.GetVersionAsync());
        Assert.Empty(await CatalogAsync(schema));

        await migrator.MigrateAsync();
        var second = await CatalogAsync(schema);
        Assert.Equal(first, second);
    }

    [DatabaseFact]
    public async Task MigrateAsync_TwoMigratorsAtOnce_ApplyTheMigrationExactlyOnce()
    {
        var schema = NewSchema();
        var results = await Task.WhenAll(
            Task.Run(() => new AgentPgMigrator(DataSource, schema).MigrateAsync()),
            Task.Run(() => new AgentPgMigrator(DataSource, schema).MigrateAsync()),
            Task.Run(() => new AgentPgMigrator(DataSource, schema).MigrateAsync()));

        Assert.All(results, version => Assert.Equal(AgentPgMigrator.LatestVersion, version));
        await using var command = DataSource.CreateCommand($"SELECT count(*) FROM \"{schema}\".agentpg_migrations");
        Assert.Equal((long)AgentPgMigrator.LatestVersion, await command.ExecuteScalarAsync());
    }

    [DatabaseFact]
    public async Task GetVersionAsync_MissingSchema_ReturnsZero()
    {
        Assert.Equal(0, await new AgentPgMigrator(DataSource, NewSchema()).GetVersionAsync());
    }

    [DatabaseFact]
    public async Task MigrateAsync_ExistingEmptySchema_IsAcceptedAndKeptOnRollback()
    {
        var schema = NewSchema();
        await ExecuteAsync($"CREATE SCHEMA \"{schema}\"");
        var migrator = new AgentPgMigrator(DataSource, schema);

        await migrator.MigrateAsync();
        Assert.Equal(AgentPgMigrator.LatestVersion, await migrator.GetVersionAsync());

        await migrator.RollbackAsync(0);
        Assert.True(await SchemaExistsAsync(schema), "a schema the user created must survive a full rollback");
    }

    [DatabaseFact]
    public async Task RollbackAsync_ToZero_DropsTheSchemaItCreated()
    {
        var schema = NewSchema();
        var migrator = new AgentPgMigrator(DataSource, schema);
        await migrator.MigrateAsync();

        await migrator.RollbackAsync(0);

        Assert.False(await SchemaExistsAsync(schema));
    }

    [DatabaseFact]
    public async Task RollbackAsync_SchemaHoldsOtherObjects_KeepsThemAndTheSchema()
    {
        var schema = NewSchema();
        var migrator = new AgentPgMigrator(DataSource, schema);
        await migrator.MigrateAsync();
        await ExecuteAsync($"CREATE TABLE \"{schema}\".app_orders (id int)");

        await migrator.RollbackAsync(0);

        Assert.True(await SchemaExistsAsync(schema));
        Assert.Equal(["table app_orders r p"], (await CatalogAsync(schema)).Where(l => l.StartsWith("table", StringComparison.Ordinal)));
    }

    [DatabaseFact]
    public async Task MigrationFiles_AppliedByHandWithSearchPath_MatchTheMigrator()
    {
        // The documented psql path: PGOPTIONS='-c search_path=my_schema' psql --single-transaction -f 001_initial.up.sql
        var byMigrator = NewSchema();
        await new AgentPgMigrator(DataSource, byMigrator).MigrateAsync();
        var byHand = NewSchema();
        var sql = await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "src", "AgentPg", "Migrations", "001_initial.up.sql"));

        await using (var connection = await DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using (var create = new NpgsqlCommand($"CREATE SCHEMA \"{byHand}\"; SET LOCAL search_path TO \"{byHand}\"", connection, transaction))
            {
                await create.ExecuteNonQueryAsync();
            }

            await using (var apply = new NpgsqlCommand(sql, connection, transaction))
            {
                await apply.ExecuteNonQueryAsync();
            }

            await transaction.CommitAsync();
        }

        Assert.Equal(AgentPgMigrator.LatestVersion, await new AgentPgMigrator(DataSource, byHand).GetVersionAsync());
        var expected = (await CatalogAsync(byMigrator)).Select(l => l.Replace(byMigrator, "S", StringComparison.Ordinal));
        var actual = (await CatalogAsync(byHand)).Select(l => l.Replace(byHand, "S", StringComparison.Ordinal));
        Assert.Equal(expected, actual);
    }

    [Fact]
    public async Task GetScript_EveryVersion_IsTheRepositoryFile()
    {
        var directory = Path.Combine(RepositoryRoot(), "src", "AgentPg", "Migrations");
        for (var version = 1; version <= AgentPgMigrator.LatestVersion; version++)
        {
            foreach (var up in new[] { true, false })
            {
                var file = Directory.GetFiles(directory, $"{version:000}_*.{(up ? "up" : "down")}.sql").Single();
                Assert.Equal(await File.ReadAllTextAsync(file), AgentPgMigrator.GetScript(version, up));
            }
        }
    }

    [Fact]
    public void GetScript_UnknownVersion_SaysWhichExist()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => AgentPgMigrator.GetScript(AgentPgMigrator.LatestVersion + 1));
        Assert.Contains($"1 to {AgentPgMigrator.LatestVersion}", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => AgentPgMigrator.GetScript(0, up: false));
    }

    [DatabaseFact]
    public async Task GetScript_AppliedWithSearchPathAndRevertedByItsDownScript_LeavesNothing()
    {
        var schema = NewSchema();
        await ExecuteAsync($"CREATE SCHEMA \"{schema}\"");
        await ApplyInTransactionAsync(schema, AgentPgMigrator.GetScript(1));
        Assert.Equal(1, await new AgentPgMigrator(DataSource, schema).GetVersionAsync());

        await ApplyInTransactionAsync(schema, AgentPgMigrator.GetScript(1, up: false));

        Assert.Equal(0, await new AgentPgMigrator(DataSource, schema).GetVersionAsync());
        Assert.Empty(await CatalogAsync(schema));
    }

    [DatabaseFact]
    public async Task StartAsync_UnmigratedSchema_RefusesWithInstructions()
    {
        var schema = NewSchema();
        await using var client = AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = schema, ApiKey = "k" });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => client.StartAsync());

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Contains("MigrateAsync", ex.Message, StringComparison.Ordinal);
        Assert.Contains("MigrateOnStart", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgMigrator.GetScript", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("src/", ex.Message, StringComparison.Ordinal);
        Assert.False(client.IsStarted);
    }

    [DatabaseFact]
    public async Task StartAsync_SchemaNewerThanLibrary_RefusesAndSaysToUpgrade()
    {
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        await ExecuteAsync($"INSERT INTO \"{schema}\".agentpg_migrations (version, name) VALUES ({AgentPgMigrator.LatestVersion + 1}, 'future')");
        await using var client = AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = schema, ApiKey = "k" });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => client.StartAsync());

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Contains("Upgrade the AgentPg package", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task StartAsync_MigrateOnStart_MigratesAndStarts()
    {
        var schema = NewSchema();
        await using var client = AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = schema, ApiKey = "k", MigrateOnStart = true });

        await client.StartAsync();

        Assert.True(client.IsStarted);
        Assert.Equal(AgentPgMigrator.LatestVersion, await new AgentPgMigrator(DataSource, schema).GetVersionAsync());
        await client.StopAsync();
    }

    [Fact]
    public void Constructor_InvalidSchemaName_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => new AgentPgMigrator(NpgsqlDataSource.Create("Host=127.0.0.1"), "Bad-Name"));
        Assert.Contains("Bad-Name", ex.Message, StringComparison.Ordinal);
    }

    private async Task ApplyInTransactionAsync(string schema, string script)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var path = new NpgsqlCommand($"SET LOCAL search_path TO \"{schema}\"", connection, transaction))
        {
            await path.ExecuteNonQueryAsync();
        }

        await using (var apply = new NpgsqlCommand(script, connection, transaction))
        {
            await apply.ExecuteNonQueryAsync();
        }

        await transaction.CommitAsync();
    }

    private async Task<bool> SchemaExistsAsync(string schema)
    {
        await using var command = DataSource.CreateCommand("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)");
        command.Parameters.Add(new NpgsqlParameter { Value = schema });
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Everything the schema holds, one line per object, from pg_catalog.</summary>
    private async Task<List<string>> CatalogAsync(string schema)
    {
        const string sql = """
            WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1)
            SELECT 'table ' || c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text
              FROM pg_class c, ns WHERE c.relnamespace = ns.oid
            UNION ALL
            SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                   || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                   || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON c.relnamespace = ns.oid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
            UNION ALL
            SELECT 'index ' || pg_get_indexdef(i.indexrelid)
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON c.relnamespace = ns.oid
            UNION ALL
            SELECT 'constraint ' || cl.relname || '.' || co.conname || ' ' || pg_get_constraintdef(co.oid)
              FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid JOIN ns ON co.connamespace = ns.oid
            UNION ALL
            SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                   || md5(p.prosrc) || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
              FROM pg_proc p JOIN ns ON p.pronamespace = ns.oid
            UNION ALL
            SELECT 'trigger ' || pg_get_triggerdef(t.oid)
              FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON c.relnamespace = ns.oid
             WHERE NOT t.tgisinternal
            UNION ALL
            SELECT 'type ' || t.typname || ' ' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                                             FROM pg_enum e WHERE e.enumtypid = t.oid), '')
              FROM pg_type t JOIN ns ON t.typnamespace = ns.oid
             WHERE t.typtype = 'e'
            ORDER BY 1
            """;
        await using var command = DataSource.CreateCommand(sql);
        command.Parameters.Add(new NpgsqlParameter { Value = schema });
        var lines = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            lines.Add(reader.GetString(0));
        }

        return lines;
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "AgentPg.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("AgentPg.slnx not found above " + AppContext.BaseDirectory);
    }
}
