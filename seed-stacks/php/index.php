<?php
// The seed report's PHP API, rewritten to answer exactly like this project's example
// functions (functions/hello, sleep, hash, memory): same routes, query parameters, JSON
// answers and 400s, so the bench runs the same scenarios against it unchanged.
// Served by PHP-FPM behind nginx, every request through this one front controller.

declare(strict_types=1);

const MIB = 1 << 20;
const PAGE = 4096;

function answer(int $status, array $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_UNESCAPED_SLASHES), "\n";
}

final class BadRequest extends Exception
{
}

// A query parameter as an integer in [$min, $max], $default when absent; anything else is
// a 400 naming the parameter, worded as functions/sdk words it.
function param(string $name, int $default, int $min, int $max): int
{
    if (!isset($_GET[$name])) {
        return $default;
    }
    $raw = $_GET[$name];
    $text = is_string($raw) ? trim($raw) : '';
    if (preg_match('/^\+?[0-9]{1,19}$/', $text) !== 1 || (float) $text > PHP_INT_MAX) {
        throw new BadRequest(sprintf(
            'query parameter `%s` must be a number from %d to %d, got %s',
            $name, $min, $max, json_encode(is_string($raw) ? $raw : '')
        ));
    }
    $value = (int) $text;
    if ($value < $min || $value > $max) {
        throw new BadRequest(sprintf(
            'query parameter `%s` must be from %d to %d, got %d', $name, $min, $max, $value
        ));
    }
    return $value;
}

function hello(): array
{
    return ['message' => 'Hello World!'];
}

// The seed's handler: usleep for a uniform 100–1000 ms (bounds from the query).
function sleep_ms(): array
{
    $min = param('min_ms', 100, 0, 60000);
    $max = param('max_ms', max(1000, $min), 0, 60000);
    if ($min > $max) {
        throw new BadRequest("min_ms ($min) is greater than max_ms ($max)");
    }
    $ms = random_int($min, $max);
    usleep($ms * 1000);
    return ['slept_ms' => $ms];
}

// SHA-256 of the body (or of `size` zero bytes), chained `rounds` times: each round
// hashes the previous digest followed by the input.
function chained_hash(): array
{
    $rounds = param('rounds', 1000, 1, 10000000);
    $input = file_get_contents('php://input');
    if ($input === false || $input === '') {
        $input = str_repeat("\0", param('size', 1024, 0, 16 * MIB));
    }
    $digest = hash('sha256', $input, true);
    for ($i = 1; $i < $rounds; $i++) {
        $ctx = hash_init('sha256');
        hash_update($ctx, $digest);
        hash_update($ctx, $input);
        $digest = hash_final($ctx, true);
    }
    return ['rounds' => $rounds, 'bytes' => strlen($input), 'sha256' => bin2hex($digest)];
}

// Allocates `mib` MiB, writes one byte per 4 KiB page, and sums them back.
function memory(): array
{
    $mib = param('mib', 16, 0, 120);
    $bytes = $mib * MIB;
    $buffer = str_repeat("\0", $bytes);
    for ($page = 0, $i = 0; $i < $bytes; $page++, $i += PAGE) {
        $buffer[$i] = chr($page % 251 + 1);
    }
    $checksum = 0;
    for ($i = 0; $i < $bytes; $i += PAGE) {
        $checksum += ord($buffer[$i]);
    }
    return ['mib' => $mib, 'checksum' => $checksum];
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
$function = explode('/', trim($path, '/'))[0];
$handlers = ['hello' => 'hello', 'sleep' => 'sleep_ms', 'hash' => 'chained_hash', 'memory' => 'memory'];
try {
    if (!isset($handlers[$function])) {
        answer(404, ['error' => "no function \"$function\""]);
    } else {
        answer(200, $handlers[$function]());
    }
} catch (BadRequest $e) {
    answer(400, ['error' => $e->getMessage()]);
}
