# edgecr installer for Windows, served by edgecrd at /install.ps1.
# `edgecrd token create --print-join-command` prints the line to paste into
# an elevated PowerShell: it downloads this script over a connection that
# accepts only the pinned server key and runs it as
#
#   & ([scriptblock]::Create(<this script>)) -Token T -Url https://DEVICE:31001 -Pin sha256//PIN
#
# The printed line needs Windows PowerShell 5.1 (powershell.exe): its
# certificate check is a script block, which PowerShell 7 cannot run on the
# thread that calls it ("There is no Runspace available", PowerShell#13597).
# This script's own check is compiled (Add-Type), so it runs under both.
#
# Downloads edgecr.exe and docker-credential-edgecr.exe from the device,
# accepting only a server whose key matches the pin (the SHA-256 of its
# SubjectPublicKeyInfo), checks them against SHA256SUMS, installs them into
# %ProgramFiles%\edgecr (re-running upgrades in place, also while the
# helper runs), adds that directory to the machine PATH and runs
# `edgecr join`. On any failure nothing is installed.
param(
    [Parameter(Mandatory = $true)][string]$Token,
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$Pin
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3

function Fail([string]$msg) { throw "edgecr install: $msg" }

if (-not $Url.StartsWith('https://')) { Fail "-Url ${Url}: want https://DEVICE:PORT" }
$Url = $Url.TrimEnd('/')
if (-not $Pin.StartsWith('sha256//')) { Fail "-Pin ${Pin}: want sha256//BASE64" }
$want = $Pin.Substring(8)

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Fail 'run this from an elevated PowerShell (Run as administrator)'
}

# The machine's architecture, not this process's: an x64 PowerShell on an
# ARM64 machine (emulated) reports PROCESSOR_ARCHITECTURE=AMD64.
$osArch = $env:PROCESSOR_ARCHITECTURE
try { $osArch = [string][Runtime.InteropServices.RuntimeInformation]::OSArchitecture } catch { }
switch ($osArch) {
    { $_ -in 'AMD64', 'X64' } { $arch = 'amd64' }
    'ARM64' { $arch = 'arm64' }
    default { Fail "unsupported architecture $osArch (want AMD64 or ARM64)" }
}

# The device's CA is not trusted yet: accept exactly the server whose
# public key hashes to the pin, whatever the chain says. edgecrd's server
# key is always ECDSA P-256, whose SubjectPublicKeyInfo DER is this fixed
# prefix followed by the key's point (what GetPublicKey returns). The check
# is compiled C#: a script block callback fails in PowerShell 7, where .NET
# calls it on a thread without a runspace (PowerShell#13597). The same type
# broadcasts WM_SETTINGCHANGE after the PATH changes, as
# [Environment]::SetEnvironmentVariable would, so that new terminals see it.
if (-not ('EdgecrInstall1' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.Net.Security;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

public static class EdgecrInstall1 {
    static readonly byte[] SpkiP256 = { 0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00 };
    public static string Pin;

    public static bool Check(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors) {
        if (cert == null || Pin == null) return false;
        byte[] key = cert.GetPublicKey();
        byte[] der = new byte[SpkiP256.Length + key.Length];
        Buffer.BlockCopy(SpkiP256, 0, der, 0, SpkiP256.Length);
        Buffer.BlockCopy(key, 0, der, SpkiP256.Length, key.Length);
        using (SHA256 sha = SHA256.Create()) {
            return Convert.ToBase64String(sha.ComputeHash(der)) == Pin;
        }
    }

    public static RemoteCertificateValidationCallback Callback() {
        return new RemoteCertificateValidationCallback(Check);
    }

    [DllImport("user32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
    static extern IntPtr SendMessageTimeout(IntPtr hWnd, uint msg, UIntPtr wParam, string lParam, uint flags, uint timeout, out UIntPtr result);

    public static void BroadcastEnvironmentChange() {
        UIntPtr result;
        // HWND_BROADCAST, WM_SETTINGCHANGE, SMTO_ABORTIFHUNG, 5 s.
        SendMessageTimeout((IntPtr)0xffff, 0x001A, UIntPtr.Zero, "Environment", 0x0002, 5000, out result);
    }
}
'@
}
[EdgecrInstall1]::Pin = $want
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
[Net.ServicePointManager]::ServerCertificateValidationCallback = [EdgecrInstall1]::Callback()

# Replace-Binary moves src over dst. A running edgecr.exe, or the helper
# while Docker runs it, can be renamed but not overwritten: it is moved
# aside first (the old copy is deleted once nothing runs it, on this or a
# later install). A sharing violation (antivirus scanning the new file, the
# helper starting) is retried with backoff for about 10 s.
function Replace-Binary([string]$src, [string]$dst) {
    $delay = 100
    for ($try = 1; ; $try++) {
        $old = $null
        try {
            if (Test-Path -LiteralPath $dst) {
                $old = $dst + '.old-' + [Guid]::NewGuid().ToString('N')
                [IO.File]::Move($dst, $old)
            }
            [IO.File]::Move($src, $dst)
            return
        }
        catch {
            # The installed copy goes back where it was: a replace that
            # fails never leaves the machine without edgecr or its helper.
            if ($old -and (Test-Path -LiteralPath $old) -and -not (Test-Path -LiteralPath $dst)) {
                try { [IO.File]::Move($old, $dst) } catch { }
            }
            if ($try -ge 10) {
                Fail ("replacing $dst failed: $($_.Exception.Message); close what uses it (Docker Desktop or a " +
                    "docker command running the credential helper, a terminal running edgecr, an antivirus scan) and run the install again")
            }
            Start-Sleep -Milliseconds $delay
            $delay = [Math]::Min($delay * 2, 2000)
        }
    }
}

# Add-MachinePath appends dir to the machine PATH in the registry, keeping
# its type REG_EXPAND_SZ and its %VAR% entries unexpanded:
# [Environment]::Get/SetEnvironmentVariable('Path', ..., 'Machine') expand
# them and write REG_SZ back, freezing every %SystemRoot%-style entry
# (dotnet/runtime#89695, PowerShell#15520).
function Add-MachinePath([string]$dir) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Control\Session Manager\Environment', $true)
    if ($null -eq $key) { Fail 'opening HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment failed' }
    try {
        $raw = [string]$key.GetValue('Path', '', [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
        $entries = @($raw -split ';' | ForEach-Object { $_.TrimEnd('\') })
        if ($entries -contains $dir.TrimEnd('\')) { return }
        $new = if ($raw.Trim() -eq '') { $dir } else { $raw.TrimEnd(';') + ';' + $dir }
        $key.SetValue('Path', $new, [Microsoft.Win32.RegistryValueKind]::ExpandString)
    }
    finally { $key.Close() }
    try { [EdgecrInstall1]::BroadcastEnvironmentChange() } catch { }
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ("edgecr-" + [Guid]::NewGuid())
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    $web = New-Object Net.WebClient
    # A device that answers 429 (throttling this address: many nodes
    # installing at once behind one NAT) or 503 (busy) is waited out as its
    # Retry-After says, plus up to a quarter (and a second) more so that
    # nodes refused together do not all come back together: at most $tries
    # attempts and $maxWait s of waiting in all.
    $tries = 8
    $maxWait = 180
    $script:waited = 0
    function Fetch([string]$name) {
        $dst = Join-Path $tmp $name
        for ($try = 1; ; $try++) {
            try { $web.DownloadFile("$Url/dist/$name", $dst); return $dst }
            catch {
                $msg = $_.Exception.Message
                # PowerShell wraps the WebException in a MethodInvocationException.
                $ex = $_.Exception
                while ($ex -and -not ($ex -is [Net.WebException])) { $ex = $ex.InnerException }
                $resp = if ($ex) { $ex.Response } else { $null }
                $code = if ($resp -is [Net.HttpWebResponse]) { [int]$resp.StatusCode } else { 0 }
                if ($code -ne 429 -and $code -ne 503) { Fail "downloading $Url/dist/$name failed (wrong pin or device unreachable?): $msg; nothing installed" }
                $ra = 0
                if (-not [int]::TryParse([string]$resp.Headers['Retry-After'], [ref]$ra) -or $ra -lt 1) { $ra = [int][Math]::Pow(2, [Math]::Min($try - 1, 5)) }
                if ($try -ge $tries) { Fail "downloading $Url/dist/${name}: the device still answers HTTP $code after $tries attempts ($($script:waited)s of waiting); nothing installed" }
                if ($script:waited + $ra -gt $maxWait) { Fail "downloading $Url/dist/${name}: the device answers HTTP $code and asks to wait ${ra}s more, beyond the ${maxWait}s this script waits in all; nothing installed" }
                $pause = [Math]::Min($ra + (Get-Random -Minimum 0 -Maximum ([int][Math]::Floor($ra / 4) + 2)), $maxWait - $script:waited)
                Write-Host "edgecr install: the device answered HTTP $code (busy, or throttling this address) for $name; retrying in ${pause}s (attempt $($try + 1) of $tries)"
                Start-Sleep -Seconds $pause
                $script:waited += $pause
            }
        }
    }
    $sums = Get-Content -LiteralPath (Fetch 'SHA256SUMS')
    $files = @{ "edgecr-windows-$arch.exe" = 'edgecr.exe'; "docker-credential-edgecr-windows-$arch.exe" = 'docker-credential-edgecr.exe' }
    foreach ($f in $files.Keys) {
        $path = Fetch $f
        $expect = $null
        foreach ($line in $sums) {
            if ($line -match '^([0-9a-fA-F]{64}) [ *](.+)$' -and $Matches[2] -eq $f) { $expect = $Matches[1].ToLowerInvariant(); break }
        }
        if (-not $expect) { Fail "$f is not listed in $Url/dist/SHA256SUMS; nothing installed" }
        $got = (Get-FileHash -Algorithm SHA256 -LiteralPath $path).Hash.ToLowerInvariant()
        if ($got -ne $expect) { Fail "checksum mismatch for ${f}: got sha256 $got, SHA256SUMS says $expect; nothing installed" }
    }

    $dir = Join-Path $env:ProgramFiles 'edgecr'
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
    # Old copies a previous upgrade moved aside, once nothing runs them.
    Get-ChildItem -LiteralPath $dir -Filter '*.old-*' -ErrorAction SilentlyContinue |
        Remove-Item -Force -ErrorAction SilentlyContinue
    # Both new binaries are copied next to their destination first: a failed
    # copy leaves the installed versions untouched.
    try {
        foreach ($f in $files.Keys) {
            Copy-Item -LiteralPath (Join-Path $tmp $f) -Destination (Join-Path $dir ($files[$f] + '.new')) -Force
        }
    }
    catch {
        foreach ($f in $files.Keys) { Remove-Item -Force -ErrorAction SilentlyContinue -LiteralPath (Join-Path $dir ($files[$f] + '.new')) }
        Fail "copying into $dir failed: $($_.Exception.Message); nothing installed"
    }
    foreach ($f in $files.Keys) {
        Replace-Binary (Join-Path $dir ($files[$f] + '.new')) (Join-Path $dir $files[$f])
    }
    Add-MachinePath $dir
    if (-not (($env:Path -split ';') -contains $dir)) { $env:Path = $env:Path.TrimEnd(';') + ';' + $dir }
    Write-Host "edgecr install: installed $dir\edgecr.exe and $dir\docker-credential-edgecr.exe (windows/$arch)"
}
finally {
    [Net.ServicePointManager]::ServerCertificateValidationCallback = $null
    Remove-Item -Recurse -Force -LiteralPath $tmp -ErrorAction SilentlyContinue
}
# No exit: this script usually runs as a script block in the user's own
# session, which exit would close.
& (Join-Path $env:ProgramFiles 'edgecr\edgecr.exe') join $Url --token $Token
if ($LASTEXITCODE -ne 0) { Fail "edgecr join failed (exit code $LASTEXITCODE)" }
