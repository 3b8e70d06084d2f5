using System.Data;
using System.Data.Common;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Sessions;

public sealed class SessionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private readonly AgentPgClient _client = db.CreateClient();

    [DatabaseFact]
    public async Task NewSessionAsync_TopLevel_HasDepthZeroAndMetadata()
    {
        var id = await _client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["user"] = "u1", ["n"] = 2 });

        var session = await _client.GetSessionAsync(id);

        Assert.Equal(id, session.Id);
        Assert.Null(session.ParentSessionId);
        Assert.Equal(0, session.Depth);
        Assert.Equal("u1", session.Metadata["user"]);
        Assert.Equal(2L, session.Metadata["n"]);
        Assert.Equal(0, session.CompactionCount);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_WithParent_IncrementsDepth()
    {
        var root = await _client.NewSessionAsync();
        var child = await _client.NewSessionAsync(root);
        var grandchild = await _client.NewSessionAsync(child);

        var session = await _client.GetSessionAsync(grandchild);

        Assert.Equal(2, session.Depth);
        Assert.Equal(child, session.ParentSessionId);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_UnknownParent_ThrowsSessionNotFound()
    {
        var missing = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.NewSessionAsync(missing));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, ex.Code);
        Assert.Equal(missing, ex.SessionId);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_NoMetadata_StoresAnEmptyObject()
    {
        var id = await _client.NewSessionAsync();
        Assert.Equal("{}", await db.ScalarAsync<string>("SELECT metadata::text FROM {schema}.agentpg_sessions WHERE id = $1", id));
    }

    [DatabaseFact]
    public async Task NewSessionAsync_MetadataWithNaN_ThrowsArgumentExceptionNamingIt()
    {
        // Before: System.Text.Json's own ArgumentException, without a parameter name or a word about the metadata.
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["score"] = double.NaN }));

        Assert.Equal("metadata", ex.ParamName);
        Assert.StartsWith("metadata cannot be stored as JSON: ", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_MetadataKeyWithAnUnpairedSurrogate_ThrowsArgumentExceptionNamingIt()
    {
        // Before: stored, with U+FFFD in place of the surrogate (System.Text.Json's writer replaces it).
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["user\uDC00"] = "u1" }));

        Assert.Equal("metadata", ex.ParamName);
        Assert.StartsWith("metadata holds a key with an unpaired UTF-16 surrogate (\\uDC00) at index 4", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task GetSessionAsync_UnknownId_ThrowsSessionNotFound()
    {
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetSessionAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_InTransaction_InvisibleBeforeCommitAndVisibleAfter()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();

        var id = await _client.NewSessionAsync(transaction, metadata: new Dictionary<string, object?> { ["order"] = 42 });

        var before = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetSessionAsync(id));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, before.Code);

        await transaction.CommitAsync();
        Assert.Equal(42L, (await _client.GetSessionAsync(id)).Metadata["order"]);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_InTransactionRolledBack_IsGone()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        Guid id;
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            id = await _client.NewSessionAsync(transaction);
            await transaction.RollbackAsync();
        }

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => _client.GetSessionAsync(id));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_InTransactionWithParentCreatedInTheSameTransaction_Works()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var parent = await _client.NewSessionAsync(transaction);

        var child = await _client.NewSessionAsync(transaction, parent);

        await transaction.CommitAsync();
        Assert.Equal(1, (await _client.GetSessionAsync(child)).Depth);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_NonNpgsqlTransaction_ThrowsArgumentException()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.NewSessionAsync(new ForeignTransaction()));
        Assert.Contains("NpgsqlTransaction", ex.Message, StringComparison.Ordinal);
        Assert.Equal("transaction", ex.ParamName);
    }

    [DatabaseFact]
    public async Task NewSessionAsync_CompletedTransaction_ThrowsArgumentException()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var transaction = await connection.BeginTransactionAsync();
        await transaction.CommitAsync();

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _client.NewSessionAsync(transaction));
        Assert.Contains("already been committed", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>A transaction of some other ADO.NET provider.</summary>
    private sealed class ForeignTransaction : DbTransaction
    {
        public override IsolationLevel IsolationLevel => IsolationLevel.ReadCommitted;

        protected override DbConnection? DbConnection => null;

        public override void Commit()
        {
        }

        public override void Rollback()
        {
        }
    }
}
