using System.Globalization;

namespace AgentPg.AspNetCore.Admin;

/// <summary>Bar charts rendered on the server as inline SVG: no script, no library, and nothing from the data but numbers.</summary>
internal static class Charts
{
    private const int Width = 600;
    private const int Height = 140;
    private const int Bottom = 18;

    /// <summary>Stacked bars, one per bucket of the dashboard; each series is (CSS class, label, value of a bucket).</summary>
    public static Html StackedBars(IReadOnlyList<RunStatisticsBucket> buckets, string title,
        params (string CssClass, string Label, Func<RunStatisticsBucket, double> Value)[] series)
        => StackedBars(buckets, b => b.Start, "HH:mm", "MM-dd HH:mm", title, series);

    /// <summary>Input and output tokens per day (the usage page), the input stacked under the output.</summary>
    public static Html DailyBars(IReadOnlyList<(DateTimeOffset Day, long Input, long Output)> days, string title)
        => StackedBars(days, d => d.Day, "yyyy-MM-dd", "MM-dd", title, ("c-input", "input", d => d.Input), ("c-output", "output", d => d.Output));

    private static Html StackedBars<T>(IReadOnlyList<T> buckets, Func<T, DateTimeOffset> start, string barFormat, string axisFormat, string title,
        params (string CssClass, string Label, Func<T, double> Value)[] series)
    {
        var max = Math.Max(1, buckets.Count == 0 ? 0 : buckets.Max(b => series.Sum(s => s.Value(b))));
        var slot = buckets.Count == 0 ? Width : (double)Width / buckets.Count;
        var bars = new List<Html>();
        for (var i = 0; i < buckets.Count; i++)
        {
            var y = (double)(Height - Bottom);
            foreach (var (cssClass, label, value) in series)
            {
                var v = value(buckets[i]);
                if (v <= 0)
                {
                    continue;
                }

                var h = v / max * (Height - Bottom - 4);
                y -= h;
                bars.Add(Html.Of($"""<rect class="{cssClass}" x="{F(i * slot + 1)}" y="{F(y)}" width="{F(Math.Max(1, slot - 2))}" height="{F(h)}"><title>{start(buckets[i]).UtcDateTime.ToString(barFormat, CultureInfo.InvariantCulture)} {label}: {F(v)}</title></rect>"""));
            }
        }

        var first = buckets.Count > 0 ? start(buckets[0]).UtcDateTime.ToString(axisFormat, CultureInfo.InvariantCulture) : "";
        var last = buckets.Count > 0 ? start(buckets[^1]).UtcDateTime.ToString(axisFormat, CultureInfo.InvariantCulture) : "";
        var legend = series.Select(s => Html.Of($"""<span class="legend {s.CssClass}">{s.Label}</span>"""));
        return Html.Of($"""
            <figure class="chart">
            <figcaption>{title} <span class="muted">(max {F(max)})</span> {legend}</figcaption>
            <svg viewBox="0 0 {Width} {Height}" role="img" aria-label="{title}">
            <line class="axis" x1="0" y1="{Height - Bottom}" x2="{Width}" y2="{Height - Bottom}"></line>
            {bars}
            <text x="0" y="{Height - 4}">{first}</text><text x="{Width}" y="{Height - 4}" text-anchor="end">{last}</text>
            </svg>
            </figure>
            """);
    }

    private static string F(double value) => value.ToString("0.#", CultureInfo.InvariantCulture);
}
