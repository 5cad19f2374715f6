# edgecr installer for Windows, served by edgecrd at /install.ps1.
# `edgecrd token create --print-join-command` prints the line to paste into
# an elevated PowerShell: it downloads this script over a connection that
# accepts only the pinned server key and runs it as
#
#   & ([scriptblock]::Create(<this script>)) -Token T -Url https://DEVICE:31001 -Pin sha256//PIN
#
# Downloads edgecr.exe and docker-credential-edgecr.exe from the device,
# accepting only a server whose key matches the pin (the SHA-256 of its
# SubjectPublicKeyInfo), checks them against SHA256SUMS, installs them into
# %ProgramFiles%\edgecr (re-running upgrades in place), adds that directory
# to the machine PATH and runs `edgecr join`. On any failure nothing is
# installed.
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

switch ($env:PROCESSOR_ARCHITECTURE) {
    'AMD64' { $arch = 'amd64' }
    'ARM64' { $arch = 'arm64' }
    default { Fail "unsupported architecture $($env:PROCESSOR_ARCHITECTURE) (want AMD64 or ARM64)" }
}

# The device's CA is not trusted yet: accept exactly the server whose
# public key hashes to the pin, whatever the chain says. edgecrd's server
# key is always ECDSA P-256, whose SubjectPublicKeyInfo DER is this fixed
# prefix followed by the key's point (what GetPublicKey returns).
$spkiP256 = [byte[]](0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00)
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
[Net.ServicePointManager]::ServerCertificateValidationCallback = {
    param($s, $cert)
    if ($null -eq $cert) { return $false }
    $der = [byte[]]($spkiP256 + $cert.GetPublicKey())
    $sha = [Security.Cryptography.SHA256]::Create()
    return [Convert]::ToBase64String($sha.ComputeHash($der)) -eq $want
}.GetNewClosure()

$tmp = Join-Path ([IO.Path]::GetTempPath()) ("edgecr-" + [Guid]::NewGuid())
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    $web = New-Object Net.WebClient
    function Fetch([string]$name) {
        $dst = Join-Path $tmp $name
        try { $web.DownloadFile("$Url/dist/$name", $dst) }
        catch { Fail "downloading $Url/dist/$name failed (wrong pin or device unreachable?): $($_.Exception.Message); nothing installed" }
        return $dst
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
    foreach ($f in $files.Keys) {
        $new = Join-Path $dir ($files[$f] + '.new')
        Copy-Item -LiteralPath (Join-Path $tmp $f) -Destination $new -Force
    }
    foreach ($f in $files.Keys) {
        Move-Item -LiteralPath (Join-Path $dir ($files[$f] + '.new')) -Destination (Join-Path $dir $files[$f]) -Force
    }
    $machinePath = [Environment]::GetEnvironmentVariable('Path', 'Machine')
    if (-not (($machinePath -split ';') -contains $dir)) {
        [Environment]::SetEnvironmentVariable('Path', ($machinePath.TrimEnd(';') + ';' + $dir), 'Machine')
    }
    $env:Path = $env:Path + ';' + $dir
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
