using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace AgentPg.Tests.EntityFrameworkCore;

/// <summary>An application's DbContext: business rows in the test class's schema.</summary>
public sealed class ShopDb(DbContextOptions<ShopDb> options, ShopSchema schema) : DbContext(options)
{
    public string Schema { get; } = schema.Name;

    public DbSet<ShopOrder> Orders => Set<ShopOrder>();

    public DbSet<ShopEffect> Effects => Set<ShopEffect>();

    public static async Task CreateTablesAsync(ShopDb db)
    {
        // One shop per schema; the statements are the test's own (the EF Core package itself holds no SQL).
        var sql = $"""
            CREATE TABLE IF NOT EXISTS "{db.Schema}".shop_orders (id uuid PRIMARY KEY, item text NOT NULL);
            CREATE TABLE IF NOT EXISTS "{db.Schema}".shop_effects (execution_id uuid PRIMARY KEY, attempt int NOT NULL, note text NOT NULL);
            """;
        await db.Database.ExecuteSqlRawAsync(sql);
    }

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.HasDefaultSchema(Schema);
        modelBuilder.Entity<ShopOrder>(e =>
        {
            e.ToTable("shop_orders");
            e.Property(o => o.Id).HasColumnName("id");
            e.Property(o => o.Item).HasColumnName("item");
        });
        modelBuilder.Entity<ShopEffect>(e =>
        {
            e.ToTable("shop_effects");
            e.HasKey(x => x.ExecutionId);
            e.Property(x => x.ExecutionId).HasColumnName("execution_id");
            e.Property(x => x.Attempt).HasColumnName("attempt");
            e.Property(x => x.Note).HasColumnName("note");
        });
    }

    public static DbContextOptions<ShopDb> Options(Npgsql.NpgsqlDataSource dataSource)
        => new DbContextOptionsBuilder<ShopDb>().UseNpgsql(dataSource).ReplaceService<IModelCacheKeyFactory, SchemaCacheKey>().Options;

    /// <summary>One model per schema (EF Core caches models per context type otherwise).</summary>
    internal sealed class SchemaCacheKey : IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => (context.GetType(), ((ShopDb)context).Schema, designTime);
    }
}

public sealed record ShopSchema(string Name);

public sealed class ShopOrder
{
    public Guid Id { get; set; }

    public string Item { get; set; } = "";
}

public sealed class ShopEffect
{
    public Guid ExecutionId { get; set; }

    public int Attempt { get; set; }

    public string Note { get; set; } = "";
}
