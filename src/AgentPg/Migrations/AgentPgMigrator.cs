using System.Globalization;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg;

/// <summary>Creates, upgrades and removes AgentPg's database schema.</summary>
/// <remarks>
/// <para>Migrations are numbered SQL files embedded in the assembly (<c>NNN_name.up.sql</c> and <c>.down.sql</c>);
/// <see cref="GetScript"/> returns them, for <c>psql -f</c> or a migration tool. Each run of the migrator takes a
/// transaction-level advisory lock for the schema, so instances starting together apply a migration exactly once, and
/// each file records its version in <c>agentpg_migrations</c>.</para>
/// <para>Everything is created in one schema; the files themselves are schema-agnostic and use the first schema of
/// the <c>search_path</c>, which the migrator sets.</para>
/// </remarks>
public sealed class AgentPgMigrator
{
    private static readonly IReadOnlyList<Script> s_scripts = LoadScripts();

    private readonly NpgsqlDataSource _dataSource;
    private readonly SchemaName _schema;
    private readonly MigrationSql _sql;

    /// <summary>Creates a migrator for one schema.</summary>
    /// <param name="dataSource">The database.</param>
    /// <param name="schema">The schema (see <see cref="AgentPgOptions.Schema"/>).</param>
    /// <exception cref="ArgumentException"><paramref name="schema"/> is not a valid AgentPg schema name.</exception>
    public AgentPgMigrator(NpgsqlDataSource dataSource, string schema = "public")
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(schema);
        if (!SchemaName.IsValid(schema))
        {
            throw new ArgumentException(
                $"'{schema}' is not a valid AgentPg schema name: use 1 to {SchemaName.MaxLength} lowercase letters, digits or " +
                "underscores, starting with a letter or an underscore.", nameof(schema));
        }

        _dataSource = dataSource;
        _schema = new SchemaName(schema);
        _sql = new MigrationSql(_schema);
    }

    /// <summary>Gets the newest schema version this library knows.</summary>
    public static int LatestVersion { get; } = s_scripts.Max(s => s.Version);

    /// <summary>Applies the migrations the schema is missing, up to <paramref name="targetVersion"/>.</summary>
    /// <param name="targetVersion">The version to reach; <see langword="null"/> for <see cref="LatestVersion"/>.</param>
    /// <param name="cancellationToken">Cancels the migration (it is rolled back).</param>
    /// <returns>The version the schema is at afterwards. A schema already at or beyond the target is left unchanged.</returns>
    /// <remarks>Creates the schema when it does not exist and accepts an existing empty one. All pending migrations
    /// are applied in one transaction.</remarks>
    /// <exception cref="AgentPgException">The schema is at a version newer than this library (<see cref="AgentPgErrorCode.SchemaVersionMismatch"/>).</exception>
    public async Task<int> MigrateAsync(int? targetVersion = null, CancellationToken cancellationToken = default)
    {
        var target = targetVersion ?? LatestVersion;
        ArgumentOutOfRangeException.ThrowIfNegative(target, nameof(targetVersion));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(target, LatestVersion, nameof(targetVersion));

        return await LockedAsync(ensureSchema: true, async (transaction, current) =>
        {
            if (current >= target)
            {
                return current;
            }

            await _sql.SetSearchPathAsync(transaction, cancellationToken).ConfigureAwait(false);
            foreach (var script in s_scripts.Where(s => s.Up && s.Version > current && s.Version <= target).OrderBy(s => s.Version))
            {
                await ExecuteScriptAsync(transaction, script, cancellationToken).ConfigureAwait(false);
            }

            return target;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reverts migrations until the schema is at <paramref name="targetVersion"/>.</summary>
    /// <param name="targetVersion">The version to go back to; 0 removes everything the migrations created (and the
    /// schema itself when <see cref="MigrateAsync"/> created it and nothing else is left in it).</param>
    /// <param name="cancellationToken">Cancels the rollback (nothing is changed).</param>
    /// <returns>A task that completes when the schema is at <paramref name="targetVersion"/>.</returns>
    /// <remarks>Down migrations drop tables: every run, message and agent stored in them is lost.</remarks>
    public async Task RollbackAsync(int targetVersion, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(targetVersion);

        await LockedAsync(ensureSchema: false, async (transaction, current) =>
        {
            if (current > targetVersion)
            {
                await _sql.SetSearchPathAsync(transaction, cancellationToken).ConfigureAwait(false);
                foreach (var script in s_scripts.Where(s => !s.Up && s.Version > targetVersion && s.Version <= current).OrderByDescending(s => s.Version))
                {
                    await ExecuteScriptAsync(transaction, script, cancellationToken).ConfigureAwait(false);
                }
            }

            if (targetVersion == 0 && _schema.Name != "public" && await _sql.IsOursAsync(transaction, cancellationToken).ConfigureAwait(false))
            {
                await _sql.DropSchemaIfEmptyAsync(transaction, cancellationToken).ConfigureAwait(false);
            }

            return current;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="body"/> in one transaction that holds the migration lock, with the schema's version
    /// (a schema newer than this library is refused first), and commits what it did.</summary>
    /// <param name="ensureSchema">Whether to create the schema when it does not exist (migrating up does, rolling back does not).</param>
    /// <param name="body">Gets the transaction and the current version; returns the version afterwards.</param>
    /// <param name="cancellationToken">Cancels the work; nothing is committed.</param>
    private async Task<int> LockedAsync(bool ensureSchema, Func<NpgsqlTransaction, int, Task<int>> body, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                await _sql.LockAsync(transaction, cancellationToken).ConfigureAwait(false);
                if (ensureSchema)
                {
                    await _sql.EnsureSchemaAsync(transaction, cancellationToken).ConfigureAwait(false);
                }

                var current = await ReadVersionAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                ThrowIfNewer(current);
                var version = await body(transaction, current).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return version;
            }
        }
    }

    /// <summary>Reads the schema's version.</summary>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The highest applied migration; 0 when the schema or its migration table does not exist.</returns>
    public async Task<int> GetVersionAsync(CancellationToken cancellationToken = default)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            return await ReadVersionAsync(connection, null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Gets the SQL of one migration exactly as the migrator applies it.</summary>
    /// <param name="version">The migration's version, 1 to <see cref="LatestVersion"/>.</param>
    /// <param name="up"><see langword="true"/> for the file that applies the migration, <see langword="false"/> for the one that reverts it.</param>
    /// <returns>The script. It creates every object unqualified in the first schema of the <c>search_path</c> and an up
    /// script records its version in <c>agentpg_migrations</c>; run it in one transaction with the <c>search_path</c> set to
    /// the target schema (for example <c>PGOPTIONS='-c search_path=my_schema' psql -v ON_ERROR_STOP=1 --single-transaction -f 001.up.sql</c>).</returns>
    /// <remarks>For applying the SQL with psql or a migration tool (Flyway, DbUp, …) without the source repository. Apply
    /// only the versions above <see cref="GetVersionAsync"/>, in order; revert newest first.</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="version"/> is not a migration of this library.</exception>
    public static string GetScript(int version, bool up = true)
        => s_scripts.FirstOrDefault(s => s.Version == version && s.Up == up)?.Text
           ?? throw new ArgumentOutOfRangeException(nameof(version), version,
               $"AgentPg has migrations 1 to {LatestVersion}; there is no version {version}.");

    internal static string HowToMigrate(string schema)
        => $"Run `await new AgentPgMigrator(dataSource, \"{schema}\").MigrateAsync()`, set AgentPgOptions.MigrateOnStart = true, " +
           $"or apply the SQL of AgentPgMigrator.GetScript(version) with psql for each version up to {LatestVersion} (docs/migrations.md).";

    private void ThrowIfNewer(int current)
    {
        if (current > LatestVersion)
        {
            throw new AgentPgException(AgentPgErrorCode.SchemaVersionMismatch, "Migrate",
                $"Schema \"{_schema.Name}\" is at version {current}, newer than the newest version this AgentPg knows " +
                $"({LatestVersion}). Upgrade the AgentPg package.");
        }
    }

    internal Task<int> ReadVersionAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
        => _sql.ReadVersionAsync(connection, transaction, cancellationToken);

    private static async Task ExecuteScriptAsync(NpgsqlTransaction transaction, Script script, CancellationToken cancellationToken)
    {
        try
        {
            await MigrationSql.ExecuteScriptAsync(transaction, script.Text, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex)
        {
            throw new AgentPgException(AgentPgErrorCode.StorageError, "Migrate",
                $"Migration {script.Name} failed: {ex.MessageText}. Nothing was changed.", ex);
        }
    }

    private static List<Script> LoadScripts()
    {
        var assembly = typeof(AgentPgMigrator).Assembly;
        const string prefix = "AgentPg.Migrations.";
        var scripts = new List<Script>();
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            var file = resource[prefix.Length..];
            var up = file.EndsWith(".up.sql", StringComparison.Ordinal);
            if (!up && !file.EndsWith(".down.sql", StringComparison.Ordinal))
            {
                continue;
            }

            var version = int.Parse(file[..file.IndexOf('_', StringComparison.Ordinal)], CultureInfo.InvariantCulture);
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream);
            scripts.Add(new Script(version, up, file, reader.ReadToEnd()));
        }

        return scripts;
    }

    private sealed record Script(int Version, bool Up, string Name, string Text);
}
